"""Importer of the authors' checkpoint (docs/method.md C: ``{'net': state_dict}``), on a synthetic state dict built
from the authors' key list (tests/models/data/sipe_reference_state_dict_keys.txt, the key list of the
authors' released checkpoint; docs/method.md C): random tensors with the listed shapes, aliases sharing one tensor."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from sipe.errors import SipeError
from sipe.models import SIPENet, convert_reference_checkpoint, load_sipe

KEYS_FILE = Path(__file__).parent / "data" / "sipe_reference_state_dict_keys.txt"


def _authors_canonical(key: str) -> str:
    """The authors' module tree: stage{i}.0 / backbone.{i}.0 are resnet50.layer{i}; stage0 / backbone.0 hold
    conv1 (index 0) and bn1 (index 1); newly_added is [classifier, side1..side4]."""
    rules = [(r"(?:stage0|backbone\.0)\.0\.", "resnet50.conv1."), (r"(?:stage0|backbone\.0)\.1\.", "resnet50.bn1."),
             (r"(?:stage|backbone\.)([1-4])\.0\.", r"resnet50.layer\1."), (r"newly_added\.0\.", "classifier."),
             (r"newly_added\.([1-4])\.", r"side\1.")]
    for pattern, repl in rules:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key, count=1)
    return key


def _random_tensor(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if key.endswith("num_batches_tracked"):
        return torch.tensor(1000)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=gen) + 0.5
    if key.endswith("running_mean") or (key.endswith("bias")):
        return torch.randn(shape, generator=gen) * 0.1
    if len(shape) == 1:  # BN weight
        return torch.rand(shape, generator=gen) * 0.5 + 0.5
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) * math.sqrt(1.0 / fan_in)


def build_reference_state_dict(num_classes: int = 20, seed: int = 0) -> dict[str, torch.Tensor]:
    """The authors' state dict layout with random values; every alias is the very same tensor object."""
    gen = torch.Generator().manual_seed(seed)
    lines = [line.split("\t") for line in KEYS_FILE.read_text().splitlines() if line and not line.startswith("#")]
    shapes = {key: tuple(int(s) for s in re.findall(r"\d+", shape)) for key, shape in lines}
    for key in ("classifier.weight", "newly_added.0.weight"):
        shapes[key] = (num_classes, *shapes[key][1:])
    tensors, state = {}, {}
    for key, shape in shapes.items():
        canon = _authors_canonical(key)
        assert shapes[canon] == shape, key  # the alias rule agrees with the listed shapes
        if canon not in tensors:
            tensors[canon] = _random_tensor(canon, shapes[canon], gen)
        state[key] = tensors[canon]
    return state


def _direct_model(state: dict[str, torch.Tensor], num_classes: int) -> SIPENet:
    """A SIPENet whose state dict is set straight from the authors' canonical tensors."""
    model = SIPENet(num_classes, backbone="resnet50", weights=None)
    ours = {k: state["resnet50." + k[len("backbone."):]] if k.startswith("backbone.") else state[k]
            for k in model.state_dict()}
    model.load_state_dict(ours)
    return model


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    state = build_reference_state_dict(20, seed=0)
    path = tmp_path_factory.mktemp("ref") / "final.pth"
    torch.save({"net": state}, path)
    return path, state


def test_synthetic_reference_layout():
    state = build_reference_state_dict(20)
    assert len(state) == 964
    assert state["stage3.0.1.conv2.weight"] is state["resnet50.layer3.1.conv2.weight"]
    assert state["backbone.3.0.1.conv2.weight"] is state["resnet50.layer3.1.conv2.weight"]
    assert state["newly_added.2.weight"] is state["side2.weight"] and state["side2.weight"].shape == (128, 512, 1, 1)
    assert len({id(v) for v in state.values()}) == 318 + 5


def test_converted_checkpoint_reproduces_direct_model(reference, tmp_path):
    src, state = reference
    out = tmp_path / "sipe.pth"
    returned = convert_reference_checkpoint(src, out)
    loaded = load_sipe(out, num_classes=20)
    direct = _direct_model(state, 20)
    assert loaded.config["backbone"] == "resnet50" and loaded.config["num_classes"] == 20
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert all(torch.equal(v, returned.state_dict()[k]) for k, v in loaded.state_dict().items())
    torch.manual_seed(3)
    images = torch.randn(1, 3, 64, 48)
    mask = torch.ones(1, 21, 64, 48)
    a, b = loaded(images, mask), direct(images, mask)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.isfinite(a["is_cam"]).all() and a["is_cam"].amax() > 0 and a["score"].abs().amax() > 0
    label = torch.zeros(21)
    label[[0, 2]] = 1
    ia, ib = loaded.infer(images, label), direct.infer(images, label)
    assert torch.equal(ia[0], ib[0]) and torch.equal(ia[1], ib[1])
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["converted_from"] == str(src)


def test_class_count_inferred_for_coco(tmp_path):
    state = build_reference_state_dict(80, seed=1)
    src = tmp_path / "coco.pth"
    torch.save({"net": state}, src)
    convert_reference_checkpoint(src, tmp_path / "coco_sipe.pth")
    model = load_sipe(tmp_path / "coco_sipe.pth")
    assert model.config["num_classes"] == 80
    assert torch.equal(model.classifier.weight, state["classifier.weight"])
    with pytest.raises(SipeError, match="80 classes, expected 20"):
        convert_reference_checkpoint(src, tmp_path / "x.pth", num_classes=20)


def _edited(state, drop=(), add=None, replace=None):
    new = {k: v for k, v in state.items() if k not in drop}
    new.update(add or {})
    new.update(replace or {})
    return new


@pytest.mark.parametrize("case, message", [
    ("missing", "have no source key"),
    ("unknown", "unknown key resnet50.fc.weight"),
    ("shape", "side1.weight has shape"),
    ("alias", "alias newly_added.2.weight differs from side2.weight"),
    ("not_net", "not an authors' SIPE checkpoint"),
])
def test_refuses_bad_reference_files(reference, tmp_path, case, message):
    _, state = reference
    key = "resnet50.layer3.2.conv1.weight"
    edits = {
        "missing": dict(drop={key, "stage3.0.2.conv1.weight", "backbone.3.0.2.conv1.weight"}),
        "unknown": dict(add={"resnet50.fc.weight": torch.zeros(1000, 2048)}),
        "shape": dict(replace={"side1.weight": torch.zeros(64, 256, 1, 1),
                               "newly_added.1.weight": torch.zeros(64, 256, 1, 1)}),
        "alias": dict(replace={"newly_added.2.weight": state["side2.weight"] + 1}),
    }
    src = tmp_path / f"{case}.pth"
    torch.save(["not", "a", "dict"] if case == "not_net" else {"net": _edited(state, **edits[case])}, src)
    out = tmp_path / "out.pth"
    with pytest.raises(SipeError) as err:
        convert_reference_checkpoint(src, out)
    assert message in str(err.value) and str(src) in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


def test_refuses_missing_and_corrupt_source(tmp_path):
    with pytest.raises(SipeError, match="not found"):
        convert_reference_checkpoint(tmp_path / "absent.pth", tmp_path / "out.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(SipeError, match="cannot read"):
        convert_reference_checkpoint(bad, tmp_path / "out.pth")
