"""The sparse random walk against a dense float64 implementation of docs/method.md F.5 step 3 on small grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sipe.refine.random_walk import propagate_to_edge, stencil_weights, transition_matrix


def naive_path(dy: int, dx: int) -> list[tuple[int, int]]:
    """Integer points of the bounding box of (0,0)-(dy,dx) closer than 1 to the line through them."""
    norm = np.hypot(dy, dx)
    return [(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
            if abs(dy * x - dx * y) / norm < 1.0]


def dense_reference(cams: np.ndarray, edge: np.ndarray, radius: int, beta: float, exp_times: int) -> np.ndarray:
    """docs/method.md F.5 step 3 literally, in float64: dense A over all pixel pairs, T = A^β / column sums,
    T squared ``exp_times`` times, rw = (cams ⊙ (1 − edge)) · T."""
    k, h, w = cams.shape
    n = h * w
    a = np.eye(n)
    for y in range(h):
        for x in range(w):
            for dy in range(0, radius):
                for dx in range(-radius + 1, radius):
                    if (dy == 0 and dx <= 0) or dy * dy + dx * dx >= radius * radius:
                        continue  # the half-disk of directions
                    ty, tx = y + dy, x + dx
                    if not (0 <= ty < h and 0 <= tx < w):
                        continue
                    aff = 1.0 - max(edge[y + py, x + px] for py, px in naive_path(dy, dx))
                    a[y * w + x, ty * w + tx] = a[ty * w + tx, y * w + x] = aff
    t = a ** beta
    t = t / t.sum(axis=0, keepdims=True)
    for _ in range(exp_times):
        t = t @ t
    x0 = (cams * (1.0 - edge)).reshape(k, n)
    return (x0 @ t).reshape(k, h, w)


@pytest.mark.parametrize("shape,radius,beta,exp_times", [((3, 7, 9), 5, 10.0, 8), ((2, 11, 6), 5, 10.0, 3),
                                                         ((4, 9, 12), 3, 4.0, 5), ((1, 5, 5), 5, 10.0, 0),
                                                         ((2, 3, 4), 5, 10.0, 8), ((2, 1, 6), 5, 10.0, 2)])
def test_equals_dense_reference(shape, radius, beta, exp_times):
    rng = np.random.default_rng(sum(shape) + radius)
    cams = rng.random(shape)
    edge = rng.random(shape[1:]) ** 3  # mostly low boundary probabilities, a few strong ones
    expected = dense_reference(cams, edge, radius, beta, exp_times)
    got = propagate_to_edge(torch.tensor(cams, dtype=torch.float32), torch.tensor(edge, dtype=torch.float32),
                            radius, beta, exp_times).numpy()
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6 * np.abs(expected).max())
    # argmax identical wherever the top two channels are not (nearly) tied
    if shape[0] > 1:
        top2 = np.sort(expected, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-4 * top2[1]
        assert clear.mean() > 0.5
        np.testing.assert_array_equal(got.argmax(0)[clear], expected.argmax(0)[clear])


def test_stencil_is_the_disk_inside_the_image():
    h, w, radius = 6, 8, 5
    offsets, weights = stencil_weights(torch.zeros(h, w), radius, beta=10.0)
    disk = {(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if dy * dy + dx * dx < 25}
    assert len(offsets) == 69 and set(offsets) == disk
    assert [dy * w + dx for dy, dx in offsets] == sorted(dy * w + dx for dy, dx in offsets)
    for (dy, dx), plane in zip(offsets, weights):
        expected = [[float(0 <= y + dy < h and 0 <= x + dx < w) for x in range(w)] for y in range(h)]
        assert plane.tolist() == expected  # no boundary: weight 1 for every in-image neighbour


def test_boundary_weights_are_symmetric():
    edge = torch.rand(7, 9, generator=torch.Generator().manual_seed(5))
    offsets, weights = stencil_weights(edge, 5, 3.0)
    plane = dict(zip(offsets, weights))
    for (dy, dx), forward in plane.items():
        backward = plane[(-dy, -dx)]
        for y in range(7):
            for x in range(9):
                if 0 <= y + dy < 7 and 0 <= x + dx < 9:
                    assert float(forward[y, x]) == float(backward[y + dy, x + dx])


def test_transition_rows_are_stochastic_and_sparse():
    edge = torch.rand(10, 13, generator=torch.Generator().manual_seed(0))
    t = transition_matrix(edge, radius=5, beta=10.0)
    assert t.layout == torch.sparse_csr
    dense = t.to_dense()
    torch.testing.assert_close(dense.sum(1), torch.ones(130), rtol=0, atol=1e-6)
    assert int((dense != 0).sum(1).max()) <= 69


def test_boundary_stops_the_walk():
    # class 1 fills the left half; a full-height boundary column keeps it from leaking right
    h, w = 8, 12
    cams = torch.zeros(2, h, w)
    cams[0] = 0.2
    cams[1, :, :5] = 1.0
    edge = torch.zeros(h, w)
    edge[:, 6] = 1.0
    rw = propagate_to_edge(cams, edge, radius=5, beta=10.0, exp_times=8)
    assert torch.all(rw[1, :, 7:] < 1e-6) and torch.all(rw[0, :, 7:] > 0.1)
    assert torch.all(rw.argmax(0)[:, :6] == 1) and torch.all(rw.argmax(0)[:, 7:] == 0)
    # without the boundary the class spreads over the whole image
    free = propagate_to_edge(cams, torch.zeros(h, w), radius=5, beta=10.0, exp_times=8)
    assert torch.all(free[1, :, 7:] > 0.3)


def test_bad_shapes():
    with pytest.raises(ValueError, match="same size"):
        propagate_to_edge(torch.zeros(2, 4, 5), torch.zeros(4, 6))
