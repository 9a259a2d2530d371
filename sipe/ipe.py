"""Image-specific prototype exploration (IPE) and general-specific consistency (GSC): the paper's math.

Pure tensor functions, named after the paper (Chen et al., CVPR 2022, sections 3.1–3.3) and
following the authors' code as docs/method.md B.3–B.5 and C restate it. Shapes: N batch, C foreground
classes, K = C + 1 channels with channel 0 = background, D feature channels, n = h·w pixels.

Memory: seed locating is a batched matmul with the [N, n, n] feature correlation, never the
reference's [N, K, n, n] broadcast; IS-CAM is an einsum of unit vectors, never [N, K, D, h, w].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORM_EPS = 1e-5  # docs/method.md B.3/B.4: max and L2 normalisation
COSINE_EPS = 1e-8  # docs/method.md B.5: torch.cosine_similarity's default


def cam_with_background(cam: torch.Tensor) -> torch.Tensor:
    """Normalised CAM with a background map, eq. (1)–(2) (docs/method.md B.3): [N, C, h, w] → [N, C+1, h, w].

    Â_c = ReLU(A_c) / (max_hw ReLU(A_c) + 1e-5); B = 1 − max_c Â_c over all C classes (absent ones too).
    """
    act = F.relu(cam)
    act = act / (act.amax(dim=(2, 3), keepdim=True) + NORM_EPS)
    background = 1.0 - act.amax(dim=1, keepdim=True)
    return torch.cat([background, act], dim=1)


def structure_similarity(cams: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Soft IoU between each pixel's feature-correlation map and each activation map, eq. (3)–(4) (docs/method.md B.4).

    R_ij = ReLU(f_i·f_j) with f the L2-normalised feature (eps 1e-5); I_k(i) = Σ_j R_ij M_k(j);
    Q_k(i) = I_k(i) / (Σ_j R_ij + Σ_j M_k(j) − I_k(i)). ``cams`` [N, K, h, w], ``feature`` [N, D, h, w]
    → Q [N, K, h, w]. R is symmetric, so I = M·R is one batched matmul.
    """
    n, k, h, w = cams.shape
    f = feature.flatten(2)
    f = f / (f.norm(dim=1, keepdim=True) + NORM_EPS)
    corr = F.relu(torch.bmm(f.transpose(1, 2), f))  # [N, n, n]
    m = cams.flatten(2).to(corr.dtype)  # [N, K, n]
    inter = torch.bmm(m, corr)  # [N, K, n]
    union = corr.sum(dim=1).unsqueeze(1) + m.sum(dim=2, keepdim=True) - inter
    return (inter / union).view(n, k, h, w)


def _one_hot_seeds(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    winner = scores.argmax(dim=1)
    seeds = F.one_hot(winner, scores.shape[1]).permute(0, 3, 1, 2).to(scores.dtype)
    return seeds * mask


@torch.no_grad()
def locate_seeds(cams: torch.Tensor, feature: torch.Tensor, mask: torch.Tensor,
                 bg_attenuation: float = 0.5) -> torch.Tensor:
    """Structure-aware seed locating, eq. (3)–(5) (docs/method.md B.4): one-hot seeds [N, K, h, w].

    The background score is multiplied by ``bg_attenuation`` (0.5), the arg-max channel wins, and
    the one-hot map is multiplied by ``mask`` (training: valid_lowres; inference: the image label),
    so a pixel won by a masked-out channel gets no seed. Seeds are arg-max outputs: no autograd.
    """
    scores = structure_similarity(cams, feature)
    scores[:, 0] *= bg_attenuation
    return _one_hot_seeds(scores, mask)


@torch.no_grad()
def threshold_seeds(cams: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """Ablation seeds (paper Fig. 8, "threshold"): background score = the constant ``threshold``, arg-max, ⊙ mask."""
    scores = cams.clone()
    scores[:, 0] = threshold
    return _one_hot_seeds(scores, mask)


@torch.no_grad()
def argmax_seeds(cams: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ablation seeds (paper Fig. 8, "argmax"): arg-max of the CAM with its 1 − max background, ⊙ mask."""
    return _one_hot_seeds(cams, mask)


def image_prototypes(seeds: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Image-specific prototypes, eq. (6) (docs/method.md B.5): p_k = (1/hw) Σ_i seed_k(i) H(:, i) → [N, K, D].

    Divided by h·w (all pixels), not by the seed count, as the reference does; cosine makes the
    scale irrelevant. A class without seeds gets the zero prototype.
    """
    h, w = feature.shape[-2:]
    if seeds.shape[-2:] != (h, w):
        raise ValueError(f"seeds {tuple(seeds.shape)} and feature {tuple(feature.shape)} differ in size")
    return torch.einsum("nkhw,ndhw->nkd", seeds.to(feature.dtype), feature) / (h * w)


def is_cam(prototypes: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Image-specific CAM, eq. (7) (docs/method.md B.5): S_k(i) = ReLU(cos(H(:, i), p_k)) → [N, K, h, w].

    Cosine as torch.cosine_similarity (each norm clamped at 1e-8), so a zero prototype gives 0.
    """
    p = prototypes / prototypes.norm(dim=2, keepdim=True).clamp_min(COSINE_EPS)
    f = feature / feature.norm(dim=1, keepdim=True).clamp_min(COSINE_EPS)
    return F.relu(torch.einsum("nkd,ndhw->nkhw", p, f))


def gsc_loss(cams: torch.Tensor, is_cams: torch.Tensor) -> torch.Tensor:
    """General-specific consistency, eq. (10) (docs/method.md C): mean |M − S / (max_hw S + 1e-5)| over [N, K, h, w].

    Gradients flow into both sides (the CAM branch and, through prototypes and cosine, the side convs).
    """
    scaled = is_cams / (is_cams.amax(dim=(2, 3), keepdim=True) + NORM_EPS)
    return (cams - scaled).abs().mean()
