"""DeepLabV2 (docs/method.md G.1, G.2): output stride 8, MSC outputs and max fusion, ASPP sum, frozen BN,
parameter groups, checkpoints and the deeplab-pytorch initialisation converter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sipe.errors import SipeError
from sipe.models.backbone import build_resnet
from sipe.models.checkpoint import save_model
from sipe.models.convert import convert_deeplab_init, deeplab_init_key
from sipe.models.deeplab import DeepLabV2, load_deeplab
from sipe.training import make_sgd

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net() -> DeepLabV2:
    torch.manual_seed(0)
    return DeepLabV2(5, backbone="resnet18")


def test_msc_outputs_at_output_stride_8(net):
    x = torch.randn(2, 3, 65, 81)
    outputs = net(x)
    # 1.0, 0.5, 0.75 and the max: each logit map is ceil(size / 8) of its own input (stride-2 ops round up)
    assert [tuple(o.shape) for o in outputs] == [(2, 5, 9, 11), (2, 5, 5, 6), (2, 5, 7, 8), (2, 5, 9, 11)]


def test_reference_logit_sizes_for_a_321_crop():
    net = DeepLabV2(21, backbone="resnet50")
    with torch.no_grad():
        sizes = [tuple(o.shape[-2:]) for o in net(torch.randn(1, 3, 321, 321))]
    assert sizes == [(41, 41), (21, 21), (31, 31), (41, 41)]  # docs/method.md G.1


def test_fused_output_is_the_max_of_the_resized_scales(net):
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        full, half, three_quarters, fused = net(x)
        size = full.shape[-2:]
        naive = torch.maximum(full, torch.maximum(
            F.interpolate(half, size=size, mode="bilinear", align_corners=False),
            F.interpolate(three_quarters, size=size, mode="bilinear", align_corners=False)))
        # each scale is the single-scale network on the bilinearly rescaled input
        again = net.single_scale(F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False))
    torch.testing.assert_close(fused, naive)
    torch.testing.assert_close(half, again)


def test_dilations_strides_and_aspp(net):
    r = net.backbone
    assert [b.conv1.dilation for b in r.layer3] == [(2, 2)] * 2 and [b.conv2.dilation for b in r.layer4] == [(4, 4)] * 2
    assert r.layer3[0].conv1.stride == (1, 1) and r.layer3[0].downsample[0].stride == (1, 1)
    assert r.layer2[0].conv1.stride == (2, 2) and r.maxpool.ceil_mode
    assert [c.dilation for c in net.aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all(float(c.bias.detach().abs().max()) == 0.0 and 0.005 < float(c.weight.detach().std()) < 0.015 for c in net.aspp.branches)
    feature = torch.randn(1, 512, 7, 9)
    with torch.no_grad():
        naive = sum(F.conv2d(feature, c.weight, c.bias, padding=r_, dilation=r_)
                    for c, r_ in zip(net.aspp.branches, (6, 12, 18, 24)))
        torch.testing.assert_close(net.aspp(feature), naive)


def test_caffe_style_moves_the_stride_to_the_1x1_conv():
    r = DeepLabV2(3, backbone="resnet50", style="caffe").backbone
    assert r.layer2[0].conv1.stride == (2, 2) and r.layer2[0].conv2.stride == (1, 1)
    r = DeepLabV2(3, backbone="resnet50").backbone
    assert r.layer2[0].conv1.stride == (1, 1) and r.layer2[0].conv2.stride == (2, 2)


def test_batchnorm_is_frozen_and_only_convs_train(net):
    net.train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert not any(p.requires_grad for m in bns for p in m.parameters())
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    net(torch.randn(2, 3, 40, 40))  # a training-mode forward must not move the statistics
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items() if "running" in k)
    assert net.backbone.conv1.weight.requires_grad  # the stem is trained (deeplab-pytorch "layer1")


def test_parameter_groups_follow_spec_g2(net):
    groups = net.parameter_groups()
    optimizer = make_sgd(groups, lr=2.5e-4, weight_decay=5e-4, momentum=0.9)
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert by_name["backbone"]["lr"] == pytest.approx(2.5e-4) and by_name["backbone"]["weight_decay"] == 5e-4
    assert by_name["aspp_weight"]["lr"] == pytest.approx(2.5e-3) and by_name["aspp_weight"]["weight_decay"] == 5e-4
    assert by_name["aspp_bias"]["lr"] == pytest.approx(5e-3) and by_name["aspp_bias"]["weight_decay"] == 0.0
    grouped = {id(p) for g in optimizer.param_groups for p in g["params"]}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert grouped == trainable and optimizer.param_groups[0]["momentum"] == 0.9


def test_checkpoint_round_trip_and_errors(net, tmp_path):
    save_model(tmp_path / "m.pt", net, steps=1)
    loaded = load_deeplab(tmp_path / "m.pt", num_classes=5)
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[-1], net.eval()(x)[-1])
    with pytest.raises(SipeError, match="checkpoint has 5 classes, expected 21"):
        load_deeplab(tmp_path / "m.pt", num_classes=21)
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(SipeError, match="bad.pt: cannot read DeepLab checkpoint"):
        load_deeplab(tmp_path / "bad.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    state["config"]["backbone"] = "resnet34"
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(SipeError, match="weights do not fit a resnet34 DeepLabV2"):
        load_deeplab(tmp_path / "other.pt")


def _deeplab_pytorch_name(key: str) -> str:
    """Naive inverse of the mapping, written out by hand for the test: torchvision → deeplab-pytorch names."""
    parts = key.split(".")
    if parts[0] in ("conv1", "bn1"):
        return f"layer1.conv1.{'conv' if parts[0] == 'conv1' else 'bn'}.{parts[1]}"
    layer, block = int(parts[0][5:]) + 1, int(parts[1]) + 1
    if parts[2] == "downsample":
        return f"layer{layer}.block{block}.shortcut.{'conv' if parts[3] == '0' else 'bn'}.{parts[4]}"
    branch = {"1": "reduce", "2": "conv3x3", "3": "increase"}[parts[2][-1]]
    return f"layer{layer}.block{block}.{branch}.{'conv' if parts[2].startswith('conv') else 'bn'}.{parts[3]}"


def test_deeplab_pytorch_keys_map_onto_torchvision():
    assert deeplab_init_key("layer1.conv1.conv.weight") == "conv1.weight"
    assert deeplab_init_key("base.layer1.conv1.bn.running_var") == "bn1.running_var"
    assert deeplab_init_key("layer4.block23.conv3x3.conv.weight") == "layer3.22.conv2.weight"
    assert deeplab_init_key("layer5.block1.shortcut.bn.bias") == "layer4.0.downsample.1.bias"
    assert deeplab_init_key("layer2.block3.increase.bn.weight") == "layer1.2.bn3.weight"
    assert deeplab_init_key("aspp.c0.weight") is None and deeplab_init_key("fc.weight") is None


def test_converting_a_deeplab_pytorch_resnet101(tmp_path):
    torch.manual_seed(1)
    reference = {k: torch.randn_like(v.float()) for k, v in build_resnet("resnet101", None).state_dict().items()
                 if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    theirs = {_deeplab_pytorch_name(k): v for k, v in reference.items()}
    theirs["fc.weight"] = torch.randn(91, 2048, 1, 1)  # DeepLabV1's classifier: dropped
    torch.save(theirs, tmp_path / "deeplabv1_resnet101-coco.pth")
    assert convert_deeplab_init(tmp_path / "deeplabv1_resnet101-coco.pth", tmp_path / "init.pth") == len(reference)
    converted = torch.load(tmp_path / "init.pth", weights_only=True)
    assert all(torch.equal(converted[k], v) for k, v in reference.items())
    net = DeepLabV2(21, backbone="resnet101", weights=tmp_path / "init.pth", style="caffe")
    assert torch.equal(net.backbone.layer3[22].conv2.weight, reference["layer3.22.conv2.weight"])
    del theirs["layer3.block2.conv3x3.conv.weight"]
    torch.save(theirs, tmp_path / "broken.pth")
    with pytest.raises(SipeError, match="broken.pth: not a deeplab-pytorch ResNet-101: 1 ResNet-101 tensors missing "
                                        r"\(first layer2.1.conv2.weight\)"):
        convert_deeplab_init(tmp_path / "broken.pth", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
