"""IRN path index (docs/method.md F.3), pair labels and losses (docs/method.md F.4) against naive loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sipe.refine.irn_loss import irn_losses
from sipe.refine.path_index import (PathIndex, affinity_labels, direction_path, pair_displacement, path_affinity,
                                    search_directions)


def test_directions_and_path_lengths_match_the_spec():
    assert len(search_directions(5)) == 34 and len(search_directions(10)) == 152
    assert sorted({len(direction_path(*d)) for d in search_directions(5)}) == [2, 3, 4, 5, 6, 7, 8, 10, 11]
    lengths = sorted({len(direction_path(*d)) for d in search_directions(10)})
    assert len(lengths) == 20 and lengths[0] == 2 and lengths[-1] == 22
    assert direction_path(0, 3) == [(0, 3), (0, 2), (0, 1), (0, 0)]
    assert direction_path(1, 1) == [(1, 1), (0, 1), (1, 0), (0, 0)]  # farthest first: the destination


def test_sources_of_a_512_crop():
    index = PathIndex(10, 128, 128)
    assert index.num_sources == 119 * 110 == 13090 and index.num_directions == 152
    assert tuple(index.dst.shape) == (152, 13090)
    lengths = [g.length for g in index.groups]
    assert lengths == sorted(lengths) and index.groups[-1].stop == 152


def test_grid_too_small():
    with pytest.raises(ValueError, match="too small for radius 10"):
        PathIndex(10, 16, 16)


def _pairs(index: PathIndex):
    """(direction number, (dy, dx), source (y, x)) for every pair, naively."""
    w = index.width
    for d, (dy, dx) in enumerate(index.directions.tolist()):
        for s in index.src.tolist():
            yield d, (dy, dx), divmod(s, w)


def test_path_affinity_against_naive_maximum():
    index = PathIndex(4, 9, 11)
    boundary = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(3))
    aff = path_affinity(boundary, index)
    assert tuple(aff.shape) == (2, index.num_directions, index.num_sources)
    for d, (dy, dx), (y, x) in _pairs(index):
        s = index.src.tolist().index(y * 11 + x)
        for n in range(2):
            expected = 1.0 - max(float(boundary[n, y + py, x + px]) for py, px in direction_path(dy, dx))
            assert float(aff[n, d, s]) == pytest.approx(expected, abs=1e-7)
            assert int(index.dst[d, s]) == (y + dy) * 11 + x + dx


def test_affinity_labels_and_pair_displacement_against_naive():
    index = PathIndex(3, 6, 7)
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.choice([0, 1, 2, 255], size=(1, 6, 7), p=[0.4, 0.25, 0.2, 0.15]))
    disp = torch.randn(1, 2, 6, 7, generator=torch.Generator().manual_seed(1))
    bg_pos, fg_pos, neg = affinity_labels(labels, index)
    pd = pair_displacement(disp, index)
    flat = labels.reshape(-1).tolist()
    for d, (dy, dx), (y, x) in _pairs(index):
        s = index.src.tolist().index(y * 7 + x)
        a, b = flat[y * 7 + x], flat[(y + dy) * 7 + x + dx]
        known = a != 255 and b != 255
        assert bg_pos[0, d, s] == float(known and a == b == 0)
        assert fg_pos[0, d, s] == float(known and a == b != 0)
        assert neg[0, d, s] == float(known and a != b)
        torch.testing.assert_close(pd[0, :, d, s], disp[0, :, y, x] - disp[0, :, y + dy, x + dx])


def test_losses_against_the_formula():
    rng = np.random.default_rng(2)
    aff = torch.tensor(rng.uniform(0.05, 0.95, (2, 3, 4)), dtype=torch.float32)
    bg, fg = (torch.tensor(rng.random((2, 3, 4)) < p, dtype=torch.float32) for p in (0.3, 0.3))
    fg = fg * (1 - bg)
    neg = (1 - bg) * (1 - fg)
    pd = torch.tensor(rng.normal(size=(2, 2, 3, 4)), dtype=torch.float32)
    directions = torch.tensor([[0, 1], [1, -1], [2, 0]])
    out = irn_losses(aff, pd, directions, bg, fg, neg)
    a, b, f, n, p = (t.double().numpy() for t in (aff, bg, fg, neg, pd))
    eps = 1e-5
    pos_bg = (b * -np.log(a + eps)).sum() / (b.sum() + eps)
    pos_fg = (f * -np.log(a + eps)).sum() / (f.sum() + eps)
    l_neg = (n * -np.log(1 + eps - a)).sum() / (n.sum() + eps)
    target = directions.numpy().T[None, :, :, None]
    dp_fg = (f[:, None] * np.abs(p - target)).sum() / (2 * f.sum() + eps)
    dp_bg = (b[:, None] * np.abs(p)).sum() / (2 * b.sum() + eps)
    expected = {"loss_pos_bg": pos_bg, "loss_pos_fg": pos_fg, "loss_neg": l_neg, "loss_dp_fg": dp_fg,
                "loss_dp_bg": dp_bg, "loss": (pos_bg / 2 + pos_fg / 2 + l_neg) / 2 + (dp_fg + dp_bg) / 2}
    for key, value in expected.items():
        assert float(out[key]) == pytest.approx(value, rel=1e-5), key


def test_all_ignore_labels_give_zero_loss_and_gradients():
    index = PathIndex(3, 8, 8)
    edge = torch.zeros(2, 8, 8, requires_grad=True)
    disp = torch.zeros(2, 2, 8, 8, requires_grad=True)
    labels = torch.full((2, 8, 8), 255)
    out = irn_losses(path_affinity(torch.sigmoid(edge), index), pair_displacement(disp, index), index.directions,
                     *affinity_labels(labels, index))
    assert float(out["loss"].detach()) == 0.0
    out["loss"].backward()
    assert torch.all(edge.grad == 0) and torch.all(disp.grad == 0)
