"""SIPENet checkpoints: round trip, atomic write, and one-line errors naming the file."""

from __future__ import annotations

import pytest
import torch

from sipe.errors import SipeError
from sipe.models import SIPENet, load_sipe, save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = SIPENet(20, backbone="resnet18", weights=None, seed_method="threshold", seed_threshold=0.25)
    with torch.no_grad():
        model.classifier.weight.normal_()
        model.backbone.layer3[0].bn1.running_mean.uniform_()  # a buffer that must travel too
    path = tmp_path_factory.mktemp("ckpt") / "sipe.pth"
    save_model(path, model, step=7, lr=[0.1, 1.0], note="x")
    return path, model


def test_round_trip(saved):
    path, model = saved
    assert [p.name for p in path.parent.iterdir()] == ["sipe.pth"]  # no temporary leftovers
    loaded = load_sipe(path, num_classes=20)
    assert loaded.config == model.config and loaded.config["seed_threshold"] == 0.25
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    raw = torch.load(path, weights_only=True)
    assert raw["meta"] == {"step": 7, "lr": [0.1, 1.0], "note": "x"}
    torch.manual_seed(1)
    images, mask = torch.randn(1, 3, 64, 64), torch.ones(1, 21, 64, 64)
    a, b = model(images, mask), loaded(images, mask)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not loaded.backbone.layer3[0].bn1.training  # BN frozen after loading too


def _assert_one_line(err, *parts):
    msg = str(err.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, msg


def test_missing_file(tmp_path):
    with pytest.raises(SipeError) as err:
        load_sipe(tmp_path / "nope.pth")
    _assert_one_line(err, "nope.pth", "not found")


@pytest.mark.parametrize("content", [b"", b"\x80\x02garbage" * 50, b"PK\x03\x04broken-zip"])
def test_corrupt_bytes(tmp_path, content):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(content)
    with pytest.raises(SipeError) as err:
        load_sipe(path)
    _assert_one_line(err, "corrupt.pth", "cannot read")


def test_truncated_checkpoint(saved, tmp_path):
    path = tmp_path / "truncated.pth"
    path.write_bytes(saved[0].read_bytes()[:100_000])
    with pytest.raises(SipeError) as err:
        load_sipe(path)
    _assert_one_line(err, "truncated.pth", "cannot read")


class _Opaque:
    pass


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "pickle.pth"
    torch.save({"model": {}, "config": {}, "obj": _Opaque()}, path)
    with pytest.raises(SipeError) as err:
        load_sipe(path)
    _assert_one_line(err, "pickle.pth", "cannot read")


def test_class_count_mismatch(saved):
    with pytest.raises(SipeError) as err:
        load_sipe(saved[0], num_classes=80)
    _assert_one_line(err, str(saved[0]), "20 classes, expected 80")


def test_missing_keys_and_wrong_architecture(saved, tmp_path):
    path, model = saved
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["side3.weight"]
    torch.save(ckpt, tmp_path / "missing.pth")
    with pytest.raises(SipeError) as err:
        load_sipe(tmp_path / "missing.pth")
    _assert_one_line(err, "missing.pth", "lacks 1 keys", "side3.weight")

    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["backbone"] = "resnet50"  # resnet18 tensors under a resnet50 config
    torch.save(ckpt, tmp_path / "arch.pth")
    with pytest.raises(SipeError) as err:
        load_sipe(tmp_path / "arch.pth")
    _assert_one_line(err, "arch.pth", "wrong architecture")

    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["classifier.weight"] = torch.zeros(80, 512, 1, 1)
    torch.save(ckpt, tmp_path / "classes.pth")
    with pytest.raises(SipeError) as err:
        load_sipe(tmp_path / "classes.pth")
    _assert_one_line(err, "classes.pth", "classifier.weight", "wrong architecture")

    torch.save({"net": model.state_dict()}, tmp_path / "authors.pth")
    with pytest.raises(SipeError) as err:
        load_sipe(tmp_path / "authors.pth")
    _assert_one_line(err, "authors.pth", "not a SIPE checkpoint")

    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["seed_method"] = "magic"
    torch.save(ckpt, tmp_path / "config.pth")
    with pytest.raises(SipeError) as err:
        load_sipe(tmp_path / "config.pth")
    _assert_one_line(err, "config.pth", "bad model config")


def test_failed_save_leaves_previous_file(saved, tmp_path):
    path = tmp_path / "keep.pth"
    path.write_bytes(b"old")
    with pytest.raises(Exception):
        save_model(path, saved[1], bad=lambda: 0)  # torch.save cannot pickle a lambda
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["keep.pth"]
