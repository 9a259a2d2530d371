"""The IRN random walk (SPEC F.5 step 3) as iterated sparse neighbour averaging (SPEC F.6).

The reference builds the dense affinity matrix A over the n = h·w pixels of the stride-4 map,
turns it into the transition matrix T = A^β / (column sums) and squares T ``exp_times`` times
(T^256: 16·n³ FLOP, about 26 TFLOP and > 0.5 GB per matrix for a 500×375 image). Because A is
symmetric, the same result is ``2**exp_times`` steps of

    y ← D⁻¹ A^β y,   d_i = Σ_j A_ij^β,

starting from y = cams ⊙ (1 − edge): each step replaces every pixel by the A^β-weighted average of
itself (weight 1) and its in-image neighbours at offsets |δ|² < radius² (68 of them for radius 5).
Here D⁻¹A^β is a sparse CSR matrix with at most 69 non-zeros per row and every step one sparse ×
dense product, O(69·n·K) per step and O(69·n) memory.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from sipe.refine.path_index import PathIndex, path_affinity


def pixel_affinities(edge: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The non-zero pairs of the reference's affinity matrix (SPEC F.5 step 3) before symmetrisation.

    ``edge`` [h, w] holds boundary probabilities. As in the reference, the map is padded with 1
    on the left, right (``radius`` columns each) and bottom (``radius`` rows), the path index of
    ``radius`` is built on the padded grid and the pairs whose two pixels are real are kept (their
    paths never leave the real pixels). Returns (source, destination, affinity) over the real
    pixels' flat indices: int64 [P], int64 [P], float [P].
    """
    height, width = edge.shape
    padded = F.pad(edge[None, None], (radius, radius, 0, radius), value=1.0)[0, 0]
    index = PathIndex(radius, height + radius, width + 2 * radius)
    affinity = path_affinity(padded[None], index)[0].reshape(-1)                  # [D·n_src]
    padded_width = width + 2 * radius
    src = index.src.to(edge.device).expand(index.num_directions, -1).reshape(-1)
    dst = index.dst.to(edge.device).reshape(-1)

    def real(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, x = flat // padded_width, flat % padded_width - radius
        return (y < height) & (x >= 0) & (x < width), y * width + x

    src_real, src_flat = real(src)
    dst_real, dst_flat = real(dst)
    keep = src_real & dst_real
    return src_flat[keep], dst_flat[keep], affinity[keep]


def transition_matrix(edge: torch.Tensor, radius: int = 5, beta: float = 10.0) -> torch.Tensor:
    """D⁻¹ A^β as a sparse CSR matrix [n, n] (SPEC F.5 step 3, F.6), n = h·w of ``edge`` [h, w].

    A is symmetric with A_ii = 1 and A_ij = A_ji = a(i, j) for the pairs of
    :func:`pixel_affinities`; row i of the result is divided by d_i = Σ_j A_ij^β, the reference's
    column sum (A is symmetric), taken over the real pixels only.
    """
    height, width = edge.shape
    n = height * width
    src, dst, affinity = pixel_affinities(edge, radius)
    weight = affinity.pow(beta)
    diagonal = torch.arange(n, device=edge.device)
    rows = torch.cat([src, dst, diagonal])
    cols = torch.cat([dst, src, diagonal])
    values = torch.cat([weight, weight, torch.ones(n, dtype=weight.dtype, device=edge.device)])
    degree = torch.zeros(n, dtype=weight.dtype, device=edge.device).index_add_(0, rows, values)
    matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), values / degree[rows], (n, n),
                                     check_invariants=False)  # indices are in range by construction
    with warnings.catch_warnings():  # "sparse CSR support is in beta" (the matmul is well established)
        warnings.simplefilter("ignore", UserWarning)
        return matrix.coalesce().to_sparse_csr()


def propagate_to_edge(cams: torch.Tensor, edge: torch.Tensor, radius: int = 5, beta: float = 10.0,
                      exp_times: int = 8) -> torch.Tensor:
    """The random walk of SPEC F.5 step 3: [K, h, w], equal to the reference's (cams ⊙ (1 − edge)) · T^(2^exp_times).

    ``cams`` [K, h, w] are the maps to propagate, ``edge`` [h, w] (or [1, h, w]) the boundary
    probabilities on the same grid. Computed as ``2**exp_times`` sparse neighbour-averaging steps
    (SPEC F.6), never as a dense n × n matrix; runs on the tensors' device in their dtype (float32).
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
