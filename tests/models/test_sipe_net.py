"""SIPENet (docs/method.md B.2–B.7): shapes, masking, seeds, IS-CAM wiring, flips, gradients, ablation switches."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sipe import ipe
from sipe.errors import SipeError
from sipe.models import SIPENet


def _net(num_classes=20, backbone="resnet18", seed=0, **kw):
    torch.manual_seed(seed)
    return SIPENet(num_classes, backbone=backbone, weights=None, **kw)


@pytest.fixture(scope="module")
def net():
    return _net()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(11)
    return torch.randn(2, 3, 96, 80)


def _mask(n, k, h, w, present, content_cols):
    """valid_mask as docs/method.md A.4 builds it: 1 inside the content box, absent classes zeroed."""
    mask = torch.zeros(n, k, h, w)
    mask[:, :, :, :content_cols] = 1
    keep = torch.zeros(k)
    keep[[0, *present]] = 1
    return mask * keep.view(1, k, 1, 1)


@pytest.mark.parametrize("num_classes", [20, 80])
@pytest.mark.parametrize("size", [(64, 64), (96, 80), (97, 75)])
def test_training_shapes(num_classes, size):
    model = _net(num_classes)
    h, w = size
    out = model(torch.randn(2, 3, h, w), torch.ones(2, num_classes + 1, h, w))
    lh, lw = -(-h // 16), -(-w // 16)
    assert set(out) == {"score", "cam", "seeds", "is_cam"}
    assert out["score"].shape == (2, num_classes)
    for key in ("cam", "seeds", "is_cam"):
        assert out[key].shape == (2, num_classes + 1, lh, lw)
        assert torch.isfinite(out[key]).all()
    assert not out["seeds"].requires_grad and out["cam"].requires_grad and out["is_cam"].requires_grad


@pytest.mark.parametrize("num_classes", [20, 80])
def test_infer_shapes(num_classes):
    model = _net(num_classes)
    label = torch.zeros(num_classes + 1)
    label[[0, 3]] = 1
    cam, is_cam = model.infer(torch.randn(1, 3, 96, 80), label)
    assert cam.shape == (num_classes, 6, 5) and is_cam.shape == (num_classes + 1, 6, 5)
    assert (cam >= 0).all() and (is_cam >= 0).all() and (is_cam <= 1 + 1e-6).all()
    assert not cam.requires_grad and not is_cam.requires_grad


def test_resnet50_shapes():
    model = _net(20, backbone="resnet50")
    x = torch.randn(1, 3, 64, 48)
    x4, hie = model.features(x)
    assert x4.shape == (1, 2048, 4, 3) and hie.shape == (1, 768, 4, 3)
    out = model(x, torch.ones(1, 21, 64, 48))
    assert out["cam"].shape == out["is_cam"].shape == out["seeds"].shape == (1, 21, 4, 3)
    cam, is_cam = model.infer(x, torch.ones(21))
    assert cam.shape == (20, 4, 3) and is_cam.shape == (21, 4, 3)


def test_hierarchical_feature(net, images):
    """docs/method.md B.2: side maps L2-normalised per pixel, resized to the side3 grid, concatenated to 768-d."""
    with torch.no_grad():
        x4, hie = net.features(images)
        side4 = net.side4(x4)
    assert hie.shape == (2, 768, 6, 5)
    norms = [hie[:, a:b].norm(dim=1) for a, b in ((0, 128), (128, 256), (256, 512), (512, 768))]
    assert torch.allclose(norms[2], torch.ones_like(norms[2]), atol=1e-4)  # side3 already on the s16 grid
    assert torch.allclose(norms[3], torch.ones_like(norms[3]), atol=1e-4)
    assert (norms[0] <= 1 + 1e-4).all() and (norms[1] <= 1 + 1e-4).all()  # bilinear mixes of unit vectors
    assert torch.allclose(hie[:, 512:], side4 / (side4.norm(dim=1, keepdim=True) + 1e-5), atol=1e-6)


def test_absent_classes_and_padding_give_zero_cam_and_seeds(net, images):
    present = [2, 5]
    mask = _mask(2, 21, 96, 80, present, content_cols=48)  # s16 columns 0..2 real, 3..4 padding
    out = net(images, mask)
    cam, seeds = out["cam"].detach(), out["seeds"]
    absent = [c for c in range(1, 21) if c not in present]
    assert (cam[:, absent] == 0).all() and (seeds[:, absent] == 0).all()
    assert (cam[..., 3:] == 0).all() and (seeds[..., 3:] == 0).all()
    assert (cam[:, [0, *present], :, :3] != 0).any()
    assert ((seeds == 0) | (seeds == 1)).all()
    # one-hot where the mask allows: every real pixel has exactly one seed here
    assert torch.equal(seeds.sum(dim=1)[..., :3], torch.ones(2, 6, 3))
    # wiring: seeds = structure-aware seeds of the masked M on the semantic feature x4 (docs/method.md B.7)
    with torch.no_grad():
        x4, hie = net.features(images)
    valid = torch.zeros(2, 21, 6, 5)
    valid[:, [0, *present], :, :3] = 1
    assert torch.equal(seeds, ipe.locate_seeds(cam, x4, valid))
    expected = ipe.is_cam(ipe.image_prototypes(seeds, hie), hie)
    assert torch.allclose(out["is_cam"].detach(), expected, atol=1e-6)
    # the background is computed before masking: absent classes still lower it
    raw = ipe.cam_with_background(net.classifier(x4)).detach()
    assert torch.allclose(cam[:, 0, :, :3], raw[:, 0, :, :3])


def test_label_as_mask_broadcasts(net, images):
    """In-training validation passes label21 [N,C+1,1,1] as the mask (docs/method.md A.5, C)."""
    label = torch.zeros(2, 21, 1, 1)
    label[:, [0, 7]] = 1
    out = net(images, label)
    full = net(images, label.expand(2, 21, 96, 80))
    assert torch.equal(out["seeds"], full["seeds"]) and torch.allclose(out["cam"], full["cam"])


def test_infer_flip_equivariance(net):
    torch.manual_seed(5)
    image = torch.randn(1, 3, 97, 75)
    for label in (torch.ones(21), torch.tensor([1.0] + [float(c % 3 == 0) for c in range(1, 21)])):
        cam, is_cam = net.infer(image, label)
        cam_f, is_cam_f = net.infer(image.flip(-1), label)
        assert torch.allclose(cam_f, cam.flip(-1), rtol=1e-5, atol=1e-5)
        assert torch.allclose(is_cam_f, is_cam.flip(-1), atol=1e-5)
        assert is_cam[1:].amax() > 0.1 and cam.amax() > 0


def test_infer_wiring_matches_spec(net):
    """docs/method.md B.7 right column: flip-sum cam and hie before normalisation, seeds from hie with the label mask."""
    torch.manual_seed(6)
    image = torch.randn(1, 3, 80, 96)
    label = torch.zeros(21)
    label[[0, 3]] = 1
    cam, is_cam = net.infer(image, label)
    with torch.no_grad():
        x4, hie = net.features(torch.cat([image, image.flip(-1)]))
        raw = net.classifier(x4)
        raw = raw[:1] + raw[1:].flip(-1)
        hie = hie[:1] + hie[1:].flip(-1)
        m = ipe.cam_with_background(raw)
        seeds = ipe.locate_seeds(m, hie, label.view(1, 21, 1, 1))
        expected = ipe.is_cam(ipe.image_prototypes(seeds, hie), hie)[0]
    assert torch.allclose(cam, F.relu(raw[0]), atol=1e-6)
    assert torch.allclose(is_cam, expected, atol=1e-6)
    absent = [c for c in range(1, 21) if c != 3]
    assert (is_cam[absent] == 0).all()  # zero prototypes for absent classes


def test_gsc_gradient_reaches_side_convs_classifier_and_layer34(images):
    model = _net().train()
    out = model(images, torch.ones(2, 21, 96, 80))
    ipe.gsc_loss(out["cam"], out["is_cam"]).backward()
    for name in ("side1", "side2", "side3", "side4", "classifier"):
        assert getattr(model, name).weight.grad.abs().sum() > 0, name
    b = model.backbone
    assert b.layer4[1].conv2.weight.grad.abs().sum() > 0 and b.layer3[0].conv1.weight.grad.abs().sum() > 0
    assert b.layer4[0].bn1.weight.grad.abs().sum() > 0 and b.layer3[1].bn2.bias.grad.abs().sum() > 0
    frozen = [*b.conv1.parameters(), *b.bn1.parameters(), *b.layer1.parameters(), *b.layer2.parameters()]
    assert all(p.grad is None for p in frozen)


def test_classification_loss_does_not_train_side_convs(images):
    model = _net().train()
    out = model(images, torch.ones(2, 21, 96, 80))
    F.multilabel_soft_margin_loss(out["score"], (torch.rand(2, 20) > 0.5).float()).backward()
    assert all(getattr(model, f"side{i}").weight.grad is None for i in range(1, 5))
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.backbone.layer1[0].conv1.weight.grad is None


def test_training_step_keeps_bn_statistics_and_moves_layer3(images):
    model = _net().train()
    assert model.training and not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    backbone_params, new_params = model.parameter_groups()
    opt = torch.optim.SGD([{"params": backbone_params, "lr": 0.1}, {"params": new_params, "lr": 1.0}], lr=0.1)
    before = copy.deepcopy(model.state_dict())
    out = model(images, torch.ones(2, 21, 96, 80))
    loss = F.multilabel_soft_margin_loss(out["score"], torch.ones(2, 20)) + ipe.gsc_loss(out["cam"], out["is_cam"])
    loss.backward()
    opt.step()
    after = model.state_dict()
    stats = [k for k in before if "running" in k or "num_batches" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    for key in ("backbone.layer3.0.bn1.weight", "backbone.layer4.2.conv3.weight", "side1.weight", "classifier.weight"):
        key = key if key in after else key.replace("layer4.2.conv3", "layer4.1.conv2")  # resnet18 has 2 blocks
        assert not torch.equal(before[key], after[key]), key
    for key in ("backbone.conv1.weight", "backbone.layer1.0.conv1.weight", "backbone.layer2.0.bn1.weight"):
        assert torch.equal(before[key], after[key]), key


def test_parameter_groups_and_config(net):
    backbone_params, new_params = net.parameter_groups()
    ids_b, ids_n = {id(p) for p in backbone_params}, {id(p) for p in new_params}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert not ids_b & ids_n and ids_b | ids_n == trainable
    b = net.backbone
    assert ids_b == {id(p) for p in (*b.layer3.parameters(), *b.layer4.parameters())}
    assert len(new_params) == 5
    config = json.loads(json.dumps(net.config))
    assert config == {"num_classes": 20, "backbone": "resnet18", "weights": None, "seed_method": "structure",
                      "seed_threshold": 0.3, "prototype_feature": "hierarchical", "background_prototype": True,
                      "bg_attenuation": 0.5}
    clone = SIPENet(**config)
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert not any(k.startswith("backbone.fc") for k in net.state_dict())
    with pytest.raises(SipeError, match="seed_method"):
        SIPENet(20, backbone="resnet18", weights=None, seed_method="kmeans")


def test_threshold_and_argmax_seed_ablations(images):
    mask = _mask(2, 21, 96, 80, [1, 6], content_cols=80)
    high = _net(seed_method="threshold", seed_threshold=2.0)(images, mask)["seeds"]
    assert torch.equal(high[:, 0], torch.ones(2, 6, 5)) and high[:, 1:].sum() == 0  # background always wins
    low = _net(seed_method="threshold", seed_threshold=-1.0)(images, mask)["seeds"]
    assert low[:, 0].sum() == 0 and torch.equal(low.sum(1), torch.ones(2, 6, 5))
    out = _net(seed_method="argmax")(images, mask)
    assert torch.equal(out["seeds"], ipe.argmax_seeds(out["cam"].detach(), mask[..., ::16, ::16]))
    mid = _net(seed_method="threshold", seed_threshold=0.3)(images, mask)
    cams = mid["cam"].detach().clone()
    cams[:, 0] = 0.3
    expected = F.one_hot(cams.argmax(1), 21).permute(0, 3, 1, 2).float() * mask[..., ::16, ::16]
    assert torch.equal(mid["seeds"], expected)


def test_semantic_prototypes_and_no_background_prototype(images):
    mask = torch.ones(2, 21, 96, 80)
    base = _net()
    sem = _net(prototype_feature="semantic")
    nobg = _net(background_prototype=False)
    out_base, out_sem, out_nobg = base(images, mask), sem(images, mask), nobg(images, mask)
    with torch.no_grad():
        x4, _ = sem.features(images)
    assert torch.equal(out_sem["seeds"], out_base["seeds"])  # same weights, same seeds
    expected = ipe.is_cam(ipe.image_prototypes(out_sem["seeds"], x4), x4)
    assert torch.allclose(out_sem["is_cam"].detach(), expected, atol=1e-6)
    assert not torch.allclose(out_sem["is_cam"], out_base["is_cam"])
    fg = out_base["is_cam"][:, 1:].detach()
    assert torch.allclose(out_nobg["is_cam"][:, 1:].detach(), fg, atol=1e-6)
    assert torch.allclose(out_nobg["is_cam"][:, 0].detach(), 1 - fg.amax(1), atol=1e-6)
    # inference honours the switches too
    label = torch.ones(21)
    image = images[:1]
    _, is_base = base.infer(image, label)
    _, is_nobg = nobg.infer(image, label)
    assert torch.allclose(is_nobg[0], 1 - is_base[1:].amax(0), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_cpu_masks():
    model = _net().cuda()
    image = torch.randn(1, 3, 64, 64, device="cuda")
    out = model(image, torch.ones(1, 21, 64, 64))  # mask left on the CPU
    cam, is_cam = model.infer(image, torch.ones(21))
    assert out["is_cam"].is_cuda and cam.is_cuda and is_cam.shape == (21, 4, 4)
