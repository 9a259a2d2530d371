"""The IRN random walk (docs/method.md F.5 step 3) as iterated sparse neighbour averaging (docs/method.md F.6).

The reference builds the dense affinity matrix A over the n = h·w pixels of the stride-4 map
(A_ii = 1, A_ij = A_ji = a(i, j) = 1 − max boundary on the path between pixels closer than
``radius``), turns it into the transition matrix T = A^β / (column sums) and squares T
``exp_times`` times (T^256: 16·n³ FLOP, about 26 TFLOP and > 0.5 GB per matrix for a 500×375
image). Because A is symmetric, the same result is ``2**exp_times`` steps of

    y ← D⁻¹ A^β y,   d_i = Σ_j A_ij^β,

starting from y = cams ⊙ (1 − edge): each step replaces every pixel by the A^β-weighted average of
itself (weight 1) and its in-image neighbours at offsets |δ|² < radius² (68 of them for radius 5).
D⁻¹A^β is built as a sparse CSR matrix with at most 69 non-zeros per row straight from the
stencil (no n × n matrix, no sorting), and every step is one sparse × dense product:
O(69·n·K) time per step and O(69·n) memory.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from sipe.refine.path_index import direction_path, search_directions


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[y, x] = x[y − dy, x − dx]`` on an [h, w] map, 0 where that falls outside."""
    h, w = x.shape
    out = torch.zeros_like(x)
    if abs(dy) < h and abs(dx) < w:
        out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
            x[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
    return out


def stencil_weights(edge: torch.Tensor, radius: int = 5, beta: float = 10.0) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """The A^β weights of every pixel towards each neighbour offset: (offsets, weights [len(offsets), h, w]).

    For a direction δ of the half-disk (:func:`~sipe.refine.path_index.search_directions`) the
    affinity of pixel p and p + δ is 1 − max of ``edge`` over the path of δ from p
    (:func:`~sipe.refine.path_index.direction_path`, docs/method.md F.3); the offset −δ carries the same
    value seen from p + δ, and (0, 0) has weight 1. Neighbours outside the image get weight 0.
    Offsets are sorted by their flat offset dy·w + dx, i.e. by column within a matrix row.
    """
    height, width = edge.shape
    reach = radius - 1
    padded = F.pad(edge[None, None], (reach,) * 4, value=1.0)[0, 0]
    weights: dict[tuple[int, int], torch.Tensor] = {(0, 0): torch.ones_like(edge)}
    for dy, dx in search_directions(radius):
        path_max = torch.stack([padded[reach + py:reach + py + height, reach + px:reach + px + width]
                                for py, px in direction_path(dy, dx)]).amax(dim=0)
        inside = torch.zeros_like(edge)
        inside[max(0, -dy):max(0, height - dy), max(0, -dx):max(0, width - dx)] = 1.0  # p + δ in the image
        forward = (1.0 - path_max).pow(beta) * inside
        weights[(dy, dx)] = forward
        weights[(-dy, -dx)] = _shift(forward, dy, dx)
    offsets = sorted(weights, key=lambda o: o[0] * width + o[1])
    return offsets, torch.stack([weights[o] for o in offsets])


def transition_matrix(edge: torch.Tensor, radius: int = 5, beta: float = 10.0) -> torch.Tensor:
    """D⁻¹ A^β as a sparse CSR matrix [n, n] (docs/method.md F.5 step 3, F.6), n = h·w of ``edge`` [h, w].

    Row i holds pixel i's in-image neighbours (including itself) with weights A_ij^β / d_i,
    d_i = Σ_j A_ij^β (the reference's column sum: A is symmetric), taken over real pixels only.
    """
    height, width = edge.shape
    n = height * width
    offsets, weights = stencil_weights(edge, radius, beta)
    degree = weights.sum(dim=0)
    ys = torch.arange(height, device=edge.device)[:, None]
    xs = torch.arange(width, device=edge.device)[None, :]
    inside = torch.stack([(ys + dy >= 0) & (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)
                          for dy, dx in offsets]).reshape(len(offsets), n).t()          # [n, S]
    flat = torch.tensor([dy * width + dx for dy, dx in offsets], device=edge.device)
    columns = (torch.arange(n, device=edge.device)[:, None] + flat[None, :])[inside]   # row-major: sorted per row
    values = (weights / degree).reshape(len(offsets), n).t()[inside]
    index = torch.int32 if n * len(offsets) < 2**31 else torch.int64  # MKL's sparse kernels are faster with int32
    rows = torch.cat([torch.zeros(1, dtype=torch.int64, device=edge.device), inside.sum(dim=1).cumsum(0)])
    with warnings.catch_warnings():  # "sparse CSR support is in beta" (the matmul is well established)
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rows.to(index), columns.to(index), values, (n, n), check_invariants=False)


def propagate_to_edge(cams: torch.Tensor, edge: torch.Tensor, radius: int = 5, beta: float = 10.0,
                      exp_times: int = 8) -> torch.Tensor:
    """The random walk of docs/method.md F.5 step 3: [K, h, w], equal to the reference's (cams ⊙ (1 − edge)) · T^(2^exp_times).

    ``cams`` [K, h, w] are the maps to propagate, ``edge`` [h, w] (or [1, h, w]) the boundary
    probabilities on the same grid. Computed as ``2**exp_times`` sparse neighbour-averaging steps
    (docs/method.md F.6), never as a dense n × n matrix; runs on the tensors' device in their dtype (float32).
    """
    if edge.dim() == 3 and edge.shape[0] == 1:
        edge = edge[0]
    if cams.dim() != 3 or edge.shape != cams.shape[1:]:
        raise ValueError(f"cams must be [K,h,w] and edge [h,w] of the same size, got {tuple(cams.shape)} "
                         f"and {tuple(edge.shape)}")
    if exp_times < 0:
        raise ValueError(f"exp_times must be >= 0, got {exp_times}")
    channels, height, width = cams.shape
    step = transition_matrix(edge.to(cams.dtype), radius, beta)
    y = (cams * (1.0 - edge)).reshape(channels, -1).t().contiguous()   # [n, K]
    for _ in range(2 ** exp_times):
        y = step @ y
    return y.t().reshape(channels, height, width)
