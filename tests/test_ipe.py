"""sipe.ipe against direct, naive implementations of the formulas of docs/method.md B.3-B.5 and C (loops and broadcasts)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sipe import ipe


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_cam_with_background(cam):
    n, c = cam.shape[:2]
    out = torch.zeros(n, c + 1, *cam.shape[2:], dtype=cam.dtype)
    for i in range(n):
        for k in range(c):
            a = cam[i, k].clamp_min(0)
            out[i, k + 1] = a / (a.max() + 1e-5)
        out[i, 0] = 1 - out[i, 1:].max(dim=0).values
    return out


def naive_structure_similarity(cams, feature):
    """The reference's broadcast: R [n, n] per image, then [K, n, n] products (docs/method.md B.4)."""
    n_img, k, h, w = cams.shape
    q = torch.zeros_like(cams)
    for i in range(n_img):
        f = feature[i].reshape(feature.shape[1], -1)
        f = f / (f.norm(dim=0, keepdim=True) + 1e-5)
        r = (f.T @ f).clamp_min(0)  # [n, n]
        m = cams[i].reshape(k, -1)  # [K, n]
        inter = (r[None] * m[:, None, :]).sum(-1)  # Σ_j R_ij M_k(j)
        union = r.sum(-1)[None] + m.sum(-1, keepdim=True) - inter
        q[i] = (inter / union).reshape(k, h, w)
    return q


@pytest.mark.parametrize("c", [20, 80])
def test_cam_with_background_matches_eq_1_2(c):
    cam = _rand(2, c, 5, 7) * 4 - 2
    out = ipe.cam_with_background(cam)
    assert out.shape == (2, c + 1, 5, 7)
    torch.testing.assert_close(out, naive_cam_with_background(cam), rtol=0, atol=1e-12)
    assert float(out[:, 1:].amax(dim=(2, 3)).min()) > 0.9999  # every channel max-normalised to ~1


@pytest.mark.parametrize("c, d", [(20, 16), (80, 8)])
def test_structure_similarity_and_seeds_match_naive(c, d):
    cams = ipe.cam_with_background(_rand(2, c, 6, 5, seed=1) * 2 - 1)
    feature = (_rand(2, d, 6, 5, seed=2) * 2 - 1).clamp_min(0)
    q = ipe.structure_similarity(cams, feature)
    expected = naive_structure_similarity(cams, feature)
    torch.testing.assert_close(q, expected, rtol=1e-10, atol=1e-12)

    mask = (_rand(2, c + 1, 1, 1, seed=3) > 0.5).double()
    mask[:, 0] = 1
    seeds = ipe.locate_seeds(cams, feature, mask, bg_attenuation=0.5)
    expected[:, 0] *= 0.5
    winner = expected.argmax(dim=1)
    for i in range(2):
        for y in range(6):
            for x in range(5):
                k = int(winner[i, y, x])
                column = seeds[i, :, y, x]
                assert column.sum() == mask[i, k, 0, 0]  # no seed where a masked channel wins
                if mask[i, k, 0, 0]:
                    assert column[k] == 1
    assert seeds.shape == (2, c + 1, 6, 5) and not seeds.requires_grad


def test_seeds_carry_no_graph_and_attenuation_moves_background():
    cams = ipe.cam_with_background(_rand(1, 3, 4, 4, seed=4).float().requires_grad_())
    feature = _rand(1, 8, 4, 4, seed=5).float().requires_grad_()
    mask = torch.ones(1, 4, 1, 1)
    full = ipe.locate_seeds(cams, feature, mask, bg_attenuation=1.0)
    none = ipe.locate_seeds(cams, feature, mask, bg_attenuation=0.0)
    assert full.grad_fn is None and none.grad_fn is None
    assert none[:, 0].sum() == 0  # zero background score never wins over positive foreground scores
    assert full[:, 0].sum() >= none[:, 0].sum()


def test_threshold_and_argmax_seeds():
    cams = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.6]], [[0.0, 0.7]]]])  # K=3, 1×2 pixels
    mask = torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1)
    thr = ipe.threshold_seeds(cams, mask, threshold=0.3)  # bg 0.3 vs (0.1, 0.0) and (0.6, 0.7)
    assert thr[0, :, 0, 0].tolist() == [1, 0, 0]
    assert thr[0, :, 0, 1].tolist() == [0, 0, 0]  # class 2 wins but is masked out
    arg = ipe.argmax_seeds(cams, mask)
    assert arg[0, :, 0, 0].tolist() == [1, 0, 0] and arg[0, :, 0, 1].tolist() == [0, 0, 0]


def test_prototypes_and_is_cam_match_naive():
    seeds = F.one_hot(torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(6)), 4)
    seeds = seeds.permute(0, 3, 1, 2).double()
    seeds[:, 3] = 0  # an absent class: zero prototype
    feature = _rand(2, 12, 5, 6, seed=7) - 0.3
    protos = ipe.image_prototypes(seeds, feature)
    assert protos.shape == (2, 4, 12)
    for i in range(2):
        for k in range(4):
            expected = sum(seeds[i, k, y, x] * feature[i, :, y, x] for y in range(5) for x in range(6)) / 30
            torch.testing.assert_close(protos[i, k], expected, rtol=1e-12, atol=1e-12)
    s = ipe.is_cam(protos, feature)
    naive = F.cosine_similarity(feature[:, None], protos[:, :, :, None, None], dim=2).clamp_min(0)
    torch.testing.assert_close(s, naive, rtol=1e-10, atol=1e-12)
    assert s[:, 3].abs().max() == 0
    assert s.argmax(dim=1).equal(naive.argmax(dim=1))


def test_gsc_loss_matches_formula_and_reaches_both_sides():
    cams = _rand(2, 5, 4, 3, seed=8).requires_grad_()
    is_cams = _rand(2, 5, 4, 3, seed=9).requires_grad_()
    loss = ipe.gsc_loss(cams, is_cams)
    expected = 0.0
    for i in range(2):
        for k in range(5):
            expected += (cams[i, k] - is_cams[i, k] / (is_cams[i, k].max() + 1e-5)).abs().sum()
    torch.testing.assert_close(loss, expected / cams.numel())
    loss.backward()
    assert cams.grad.abs().sum() > 0 and is_cams.grad.abs().sum() > 0


def test_structure_similarity_memory_is_n_squared_not_k_n_squared():
    """At 32×32 (512 crop) with K=81 the reference broadcast needs 81·1024² floats per image."""
    cams = torch.rand(1, 81, 32, 32)
    feature = torch.rand(1, 64, 32, 32)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        ipe.structure_similarity(cams, feature)
    peak_alloc = max(e.cpu_memory_usage for e in prof.key_averages())
    assert peak_alloc <= 2 * 1024 * 1024 * 4  # at most two n×n float32 buffers, not 81 of them
