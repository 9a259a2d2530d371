"""The model contract every network shares (sipe.models.checkpoint): save, rebuild from the saved config,
check the config, keys and shapes, refuse another network's file; and the import graph of sipe/models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from sipe.errors import SipeError
from sipe.models.checkpoint import SavedModel
from sipe.models.deeplab import DeepLabV2, load_deeplab
from sipe.models.irn import IRN, load_irn
from sipe.models.sipe_net import SIPENet, load_sipe

torch.set_num_threads(1)

# name: (build, loader, what the loader is asked to check)
NETWORKS = {
    "sipe": (lambda: SIPENet(4, backbone="resnet18", weights=None), load_sipe, {"num_classes": 4}),
    "irn": (lambda: IRN("resnet18", weights=None), load_irn, {"backbone": "resnet18"}),
    "deeplab": (lambda: DeepLabV2(5, backbone="resnet18"), load_deeplab, {"num_classes": 5}),
}
# The config keys of the model files users have (written since the first release): they must stay loadable.
SAVED_CONFIG = {
    "sipe": {"num_classes", "backbone", "weights", "seed_method", "seed_threshold", "prototype_feature",
             "background_prototype", "bg_attenuation"},
    "irn": {"model", "backbone", "weights"},
    "deeplab": {"num_classes", "backbone", "style", "scales"},
}
MODELS = Path(__file__).resolve().parents[2] / "sipe" / "models"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """name -> (model, path of its file)."""
    folder = tmp_path_factory.mktemp("contract")
    out = {}
    for name, (build, _, _) in NETWORKS.items():
        torch.manual_seed(0)
        model = build()
        with torch.no_grad():
            next(b for k, b in model.named_buffers() if k.endswith("running_mean")).uniform_()  # buffers travel too
        model.save(folder / f"{name}.pt", steps=3, note="x")
        out[name] = model, folder / f"{name}.pt"
    return out


def _edit(path: Path, tmp_path: Path, edit) -> Path:
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp_path / f"edited_{path.name}")
    return tmp_path / f"edited_{path.name}"


def _one_line_error(call, *parts: str) -> None:
    with pytest.raises(SipeError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and all(part in message for part in parts), message


@pytest.mark.parametrize("name", NETWORKS)
def test_round_trip_in_eval_mode_with_the_saved_config(saved, name):
    model, path = saved[name]
    _, loader, expected = NETWORKS[name]
    loaded = loader(path, **expected)
    assert isinstance(loaded, SavedModel) and type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config
    own, state = model.state_dict(), loaded.state_dict()
    assert state.keys() == own.keys() and all(torch.equal(v, own[k]) for k, v in state.items())
    assert type(model).load(path, **expected).config == model.config  # SavedModel.load: the same path
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "config", "meta"} and raw["meta"] == {"steps": 3, "note": "x"}
    assert set(raw["config"]) == SAVED_CONFIG[name]


@pytest.mark.parametrize("name", NETWORKS)
def test_another_networks_file_is_refused(saved, name):
    _, loader, _ = NETWORKS[name]
    label = type(saved[name][0]).LABEL
    kind = f"not {'an' if label[0] in 'AEIOU' else 'a'} {label} checkpoint"
    for other, (_, path) in saved.items():
        if other != name:
            _one_line_error(lambda: loader(path), str(path), kind)


@pytest.mark.parametrize("name", NETWORKS)
def test_missing_unexpected_and_mis_shaped_tensors(saved, name, tmp_path):
    model, path = saved[name]
    loader = NETWORKS[name][1]
    first, *_ = (k for k, v in model.state_dict().items() if v.dim() == 4)
    what = f"weights do not fit a resnet18 {type(model).__name__}"

    def drop(ckpt):
        del ckpt["model"][first]

    def add(ckpt):
        ckpt["model"]["extra.weight"] = torch.zeros(1)

    def reshape(ckpt):
        ckpt["model"][first] = ckpt["model"][first][:1]

    _one_line_error(lambda: loader(_edit(path, tmp_path, drop)), what, "1 missing, 0 unexpected, 0 mis-shaped", first)
    _one_line_error(lambda: loader(_edit(path, tmp_path, add)), what, "0 missing, 1 unexpected", "extra.weight")
    _one_line_error(lambda: loader(_edit(path, tmp_path, reshape)), what, "1 mis-shaped", first, "wrong architecture")


@pytest.mark.parametrize("name", NETWORKS)
def test_config_the_caller_does_not_expect_or_the_network_refuses(saved, name, tmp_path):
    _, path = saved[name]
    loader, expected = NETWORKS[name][1:]
    if "num_classes" in expected:
        _one_line_error(lambda: loader(path, num_classes=80), f"has {expected['num_classes']} classes, expected 80")
    else:
        _one_line_error(lambda: loader(path, backbone="resnet50"),
                        "is for backbone resnet18, but sipe.backbone is resnet50")

    def unknown_backbone(ckpt):
        ckpt["config"]["backbone"] = "resnet42"

    _one_line_error(lambda: loader(_edit(path, tmp_path, unknown_backbone)), "bad model config", "resnet42")
    _one_line_error(lambda: loader(tmp_path / "absent.pt"), "absent.pt", "not found")


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports anywhere (functions included), ``from a import b`` as ``a.b`` too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_models_import_no_data_and_no_cycles():
    modules = {f"sipe.models.{p.stem}": p for p in MODELS.glob("*.py") if p.stem != "__init__"}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    assert not {name for name, path in modules.items() if any(m.startswith("sipe.data") for m in _imports(path))}

    def reaches(start, goal, seen=()):
        return any(m == goal or (m not in seen and reaches(m, goal, (*seen, m))) for m in graph[start])

    assert not [name for name in graph if reaches(name, name)]
