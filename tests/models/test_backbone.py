"""Backbone (docs/method.md B.1): output stride 16 without dilation, frozen BN statistics, frozen stem, weights loading."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sipe.errors import SipeError
from sipe.models import backbone_stages, build_resnet, freeze_bn, imagenet_weights_file, stage_channels


def _stage_shapes(model, h, w):
    x = torch.zeros(1, 3, h, w)
    shapes = []
    with torch.no_grad():
        for stage in backbone_stages(model):
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
    return shapes


@pytest.mark.parametrize("name, size", [("resnet18", (97, 75)), ("resnet18", (33, 161)), ("resnet34", (97, 75)),
                                        ("resnet50", (33, 161)), ("resnet101", (49, 17))])
def test_output_stride_16_odd_sizes(name, size):
    torch.manual_seed(0)
    model = build_resnet(name, None).eval()
    h, w = size
    c = stage_channels(name)
    s4 = (math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2))  # conv1 s2, maxpool s2
    expected = [(c[0], *s4), (c[1], *s4),
                (c[2], math.ceil(s4[0] / 2), math.ceil(s4[1] / 2)),
                (c[3], math.ceil(h / 16), math.ceil(w / 16)),
                (c[4], math.ceil(h / 16), math.ceil(w / 16))]
    assert _stage_shapes(model, h, w) == expected


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_output_stride_16_at_512(name):
    model = build_resnet(name, None)
    shapes = _stage_shapes(model, 512, 512)
    assert [s[1:] for s in shapes] == [(128, 128), (128, 128), (64, 64), (32, 32), (32, 32)]
    assert [s[0] for s in shapes] == list(stage_channels(name))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_layer4_stride_one_without_dilation(name):
    model = build_resnet(name, None)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert all(m.dilation == (1, 1) for m in convs.values())
    assert all(m.stride == (1, 1) for n, m in convs.items() if n.startswith("layer4"))
    strided = {n for n, m in convs.items() if m.stride == (2, 2)}
    first_3x3 = "conv1" if name == "resnet18" else "conv2"
    assert strided == {"conv1", f"layer2.0.{first_3x3}", "layer2.0.downsample.0",
                       f"layer3.0.{first_3x3}", "layer3.0.downsample.0"}


def test_bn_stays_in_eval_and_statistics_do_not_move():
    torch.manual_seed(0)
    model = build_resnet("resnet18", None)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert model.training and bns and not any(bn.training for bn in bns)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.randn(2, 3, 64, 64) * 3 + 1).square().mean()
    loss.backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.layer3[0].bn1.weight.grad.abs().sum() > 0  # BN affine still trains

    # freeze_bn works on any module
    seq = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    freeze_bn(seq)
    assert seq.training and not seq[1].training


def test_stem_is_frozen_and_layers_trainable():
    model = build_resnet("resnet50", None)
    assert not any(p.requires_grad for p in (*model.conv1.parameters(), *model.bn1.parameters()))
    assert all(p.requires_grad for p in model.layer3.parameters())


def test_missing_imagenet_weights_names_file_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(SipeError) as err:
        build_resnet("resnet50", "imagenet")
    msg = str(err.value)
    assert "\n" not in msg
    assert "resnet50-0676ba61.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert imagenet_weights_file("resnet50") == tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"


def test_imagenet_weights_load_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    torch.manual_seed(1)
    source = build_resnet("resnet18", None)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    path = imagenet_weights_file("resnet18")
    assert path.name == "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    loaded = build_resnet("resnet18", "imagenet")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in source.state_dict().items())
    assert not loaded.conv1.weight.requires_grad


def test_weights_from_path_and_errors(tmp_path):
    torch.manual_seed(2)
    source = build_resnet("resnet18", None)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in source.state_dict().items()
             if not k.startswith("fc.")}  # fc may be absent
    good = tmp_path / "r18.pth"
    torch.save(state, good)
    loaded = build_resnet("resnet18", good)
    assert torch.equal(loaded.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])

    with pytest.raises(SipeError, match="not found"):
        build_resnet("resnet18", tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(SipeError, match="corrupt.pth: cannot read"):
        build_resnet("resnet18", corrupt)
    with pytest.raises(SipeError) as err:
        build_resnet("resnet50", good)  # resnet18 tensors into a resnet50
    assert "does not match torchvision resnet50" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SipeError, match="unknown backbone"):
        build_resnet("resnet42", None)
