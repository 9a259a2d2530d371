"""IRN's training losses (docs/method.md F.4; Ahn et al., CVPR 2019, eq. 4–7).

With affinities a [N, D, n_src] of the pairs of a path index, pair labels (bg_pos, fg_pos, neg)
of the same shape, and the pair displacements pd = D(src) − D(dst) [N, 2, D, n_src]:

* L_pos = ½·mean_bg_pos(−log(a + ε)) + ½·mean_fg_pos(−log(a + ε)), L_neg = mean_neg(−log(1 + ε − a));
* L_dfg = Σ fg_pos·|pd − δ| / (2·Σ fg_pos + ε) (δ = (dy, dx) of each direction: two pixels of one
  instance point at the same centroid), L_dbg = Σ bg_pos·|pd| / (2·Σ bg_pos + ε);
* total = (L_pos + L_neg)/2 + (L_dfg + L_dbg)/2,

where each mean is the label-weighted sum over the whole batch divided by (label sum + ε), ε = 1e-5.
A batch without any pair of a kind (all-ignore IR labels) contributes 0 for that term.
"""

from __future__ import annotations

import torch

EPS = 1e-5


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (mask * values).sum() / (mask.sum() + EPS)


def irn_losses(affinity: torch.Tensor, pair_disp: torch.Tensor, directions: torch.Tensor, bg_pos: torch.Tensor,
               fg_pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
    """The terms and the total of docs/method.md F.4 as a dict: ``loss`` (total), ``loss_pos_bg``, ``loss_pos_fg``,
    ``loss_neg``, ``loss_dp_fg``, ``loss_dp_bg``. ``directions`` int [D, 2] are the (dy, dx) offsets."""
    pos_loss = -torch.log(affinity + EPS)
    neg_loss = -torch.log(1.0 + EPS - affinity)
    loss_pos_bg = _masked_mean(pos_loss, bg_pos)
    loss_pos_fg = _masked_mean(pos_loss, fg_pos)
    loss_neg = _masked_mean(neg_loss, neg)
    target = directions.t().to(pair_disp)[None, :, :, None]                  # [1, 2, D, 1]
    loss_dp_fg = (fg_pos[:, None] * (pair_disp - target).abs()).sum() / (2 * fg_pos.sum() + EPS)
    loss_dp_bg = (bg_pos[:, None] * pair_disp.abs()).sum() / (2 * bg_pos.sum() + EPS)
    total = (0.5 * loss_pos_bg + 0.5 * loss_pos_fg + loss_neg) / 2 + (loss_dp_fg + loss_dp_bg) / 2
    return {"loss": total, "loss_pos_bg": loss_pos_bg, "loss_pos_fg": loss_pos_fg, "loss_neg": loss_neg,
            "loss_dp_fg": loss_dp_fg, "loss_dp_bg": loss_dp_bg}
