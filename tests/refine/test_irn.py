"""The IRN network (docs/method.md F.2), its checkpoints, and the pseudo-label steps of docs/method.md F.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sipe.errors import SipeError
from sipe.models.checkpoint import save_model
from sipe.models.irn import IRN, load_irn
from sipe.refine.pseudo_labels import boundary_map, rw_label_map, stride4_size, walk_scores
from sipe.refine.random_walk import propagate_to_edge


@pytest.fixture(scope="module")
def irn() -> IRN:
    torch.manual_seed(0)
    return IRN("resnet18", weights=None)


def test_shapes_at_stride_4(irn):
    edge, disp = irn(torch.randn(2, 3, 61, 90))
    assert tuple(edge.shape) == (2, 1, 16, 23) and tuple(disp.shape) == (2, 2, 16, 23)  # ceil(H/4), ceil(W/4)
    assert stride4_size(61, 90) == (16, 23)


def test_backbone_frozen_heads_trained(irn):
    irn.train()
    assert not irn.backbone.training and all(not m.training for m in irn.backbone.modules())
    assert all(not p.requires_grad for p in irn.backbone.parameters())
    edge, disp = irn(torch.randn(1, 3, 64, 64))
    (edge.sum() + disp.sum()).backward()
    assert all(p.grad is not None for p in irn.edge_parameters() + irn.displacement_parameters())
    assert all(p.grad is None for p in irn.backbone.parameters())
    names = {n.split(".")[0] for n, _ in irn.named_parameters()}
    assert names == {"backbone", *(f"edge{i}" for i in range(1, 7)), *(f"dp{i}" for i in range(1, 8))}
    irn.zero_grad(set_to_none=True)
    irn.eval()


def test_edge_branch_does_not_depend_on_the_displacement_branch(irn):
    x = torch.randn(1, 3, 48, 56)
    before = irn.edge(x)
    with torch.no_grad():
        for p in irn.displacement_parameters():
            p.add_(1.0)
    torch.testing.assert_close(irn.edge(x), before)
    with torch.no_grad():
        for p in irn.displacement_parameters():
            p.sub_(1.0)


def test_checkpoint_round_trip_and_errors(irn, tmp_path):
    path = tmp_path / "irn.pt"
    save_model(path, irn, steps=3)
    loaded = load_irn(path, backbone="resnet18")
    x = torch.randn(1, 3, 40, 44)
    torch.testing.assert_close(loaded.edge(x), irn.eval().edge(x))
    with pytest.raises(SipeError, match=r"irn.pt: IRN checkpoint is for backbone resnet18, but sipe.backbone is "
                                        r"resnet50") as err:
        load_irn(path, backbone="resnet50")
    assert "\n" not in str(err.value)
    torch.save({"model": {}, "config": {"num_classes": 3, "backbone": "resnet18"}}, tmp_path / "sipe.pt")
    with pytest.raises(SipeError, match="not an IRN checkpoint"):
        load_irn(tmp_path / "sipe.pt")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["edge6.bias"]
    torch.save(ckpt, tmp_path / "broken.pt")
    with pytest.raises(SipeError, match="1 missing"):
        load_irn(tmp_path / "broken.pt")
    with pytest.raises(SipeError, match="not found"):
        load_irn(tmp_path / "none.pt")


def test_boundary_map_pads_and_averages_the_flip(irn):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    edge = boundary_map(irn, image, pad_size=64)
    assert tuple(edge.shape) == (10, 13) and float(edge.min()) > 0 and float(edge.max()) < 1
    # by hand: pad each of [image, flip] to 64x64, logits cropped to 10x13, mean of the image's and the flipped-back
    from sipe.data.transforms import normalize_image

    x = normalize_image(image)
    pair = F.pad(torch.stack([x, x.flip(-1)]), (0, 14, 0, 27))
    logits = irn.edge(pair)[:, 0, :10, :13]
    torch.testing.assert_close(edge, torch.sigmoid((logits[0] + logits[1].flip(-1)) / 2))
    mirrored = boundary_map(irn, np.ascontiguousarray(image[:, ::-1]), pad_size=0)  # no padding: flip-symmetric
    torch.testing.assert_close(mirrored.flip(-1), boundary_map(irn, image, pad_size=0), atol=1e-5, rtol=1e-5)


def test_walk_scores_and_label_map():
    rng = np.random.default_rng(4)
    is_cam = torch.tensor(rng.random((3, 30, 41)), dtype=torch.float32)
    edge = torch.tensor(rng.random((8, 11)), dtype=torch.float32)
    scores = walk_scores(is_cam, edge, cam_power=1.5, radius=5, beta=10.0, exp_times=4)
    small = F.interpolate(is_cam[None], size=(8, 11), mode="bilinear", align_corners=False)[0] ** 1.5
    torch.testing.assert_close(scores, propagate_to_edge(small, edge, 5, 10.0, 4))
    labels = rw_label_map(np.array([0, 4, 9]), scores, 30, 41)
    up = F.interpolate(scores[None], size=(32, 44), mode="bilinear", align_corners=False)[0, :, :30, :41]
    assert labels.dtype == np.uint8 and labels.shape == (30, 41)
    assert np.array_equal(labels, np.array([0, 4, 9])[up.argmax(0).numpy()])
