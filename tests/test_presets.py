"""Presets (sipe/presets.py): paper values, byte-exact round trips, comments kept, schema, errors."""

from __future__ import annotations

import io
import shutil

import pytest
import yaml

from sipe.config import validate_params
from sipe.errors import ConfigError
from sipe.io import round_trip_yaml
from sipe.presets import PRESETS, apply_preset, preset_values
from tests.conftest import REPO

# The paper's (authors' code) values, from docs/method.md (section in the comment). Written here once,
# independently of sipe/presets/*.yaml.
_SIPE = {
    "sipe.backbone": "resnet50", "sipe.weights": "imagenet",  # B.1
    "sipe.crop": 512, "sipe.resize_long": [320, 640],  # A.4
    "sipe.batch_size": 16, "sipe.epochs": 5, "sipe.lr": 0.1, "sipe.new_layer_lr_mult": 10,  # C
    "sipe.weight_decay": 1.0e-4, "sipe.momentum": 1.0e-4, "sipe.poly_power": 0.9, "sipe.grad_clip": 1.0,  # C
    "sipe.gsc": True, "sipe.seed": 15,  # C, A.4
    "sipe.seed_method": "structure", "sipe.bg_attenuation": 0.5,  # B.4
    "sipe.prototype_feature": "hierarchical", "sipe.background_prototype": True,  # B.5
    "cams.scales": [1.0, 0.5, 1.5, 2.0],  # A.5, D
    "crf.iterations": 10, "crf.gt_prob": 0.7, "crf.gaussian_sxy": 3, "crf.gaussian_compat": 3,  # E
    "crf.bilateral_sxy": 50, "crf.bilateral_srgb": 5, "crf.bilateral_compat": 10,  # E
    "ir_labels.bg_attenuation": 0.5,  # F.1
    "irn.crop": 512, "irn.scale_range": [0.5, 1.5], "irn.batch_size": 32, "irn.epochs": 3,  # F.4
    "irn.radius": 10, "irn.lr": 0.1, "irn.displacement_lr_mult": 10, "irn.weight_decay": 1.0e-4,  # F.3, F.2
    "irn.momentum": 1.0e-4, "irn.poly_power": 0.9, "irn.seed": 15,  # F.2, H.1 item 14
    "pseudo_labels.pad_size": 512, "pseudo_labels.cam_power": 1.5, "pseudo_labels.radius": 5,  # F.5
    "pseudo_labels.beta": 10, "pseudo_labels.exp_times": 8,  # F.5
    "deeplab.backbone": "resnet101", "deeplab.crop": 321, "deeplab.scales": [0.5, 0.75, 1.0, 1.25, 1.5],  # G.1, G.2
    "deeplab.batch_size": 5, "deeplab.iter_size": 2, "deeplab.lr": 2.5e-4, "deeplab.momentum": 0.9,  # G.2
    "deeplab.weight_decay": 5.0e-4, "deeplab.poly_power": 0.9, "deeplab.lr_every": 10,  # G.2
    "deeplab.grad_clip": None, "deeplab.flip": False, "deeplab.crf": True,  # G.2, G.3, G.4
}
PAPER = {
    "voc": {**_SIPE, "dataset": "voc", "refine.method": "irn", "deeplab.iterations": 20000,  # A.1, F, G.2
            "deeplab.weights": "data/raw/deeplab/deeplabv1_resnet101-coco_torchvision.pth",  # G.2 (converted)
            "deeplab.style": "caffe"},  # G.1
    "coco": {**_SIPE, "dataset": "coco", "refine.method": "crf",  # A.3, E
             "deeplab.weights": "imagenet", "deeplab.style": "torchvision"},  # G.2 (#11)
}
# Where the paper is silent (docs/method.md G.5, Deviations), our choices.
CHOICES = {
    "voc": {"sipe.variants": ["sipe", "nogsc"], "cams.shards": 8, "refine.shards": 8, "deeplab.shards": 8},
    "coco": {"sipe.variants": ["sipe"], "cams.shards": 32, "refine.shards": 32, "deeplab.shards": 32,
             "deeplab.iterations": 100000},
}


def _get(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


def _same(a, b) -> bool:
    """Equal in value and type (1 is not 1.0, nor True)."""
    return type(a) is type(b) and a == b and (not isinstance(a, list) or all(map(_same, a, b)))


def _comments(text: str) -> list[str]:
    return [line[line.index("#"):] for line in text.splitlines() if "#" in line]


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def test_round_trip_without_changes_is_byte_identical():
    text = (REPO / "params.yaml").read_text()
    out = io.StringIO()
    rt = round_trip_yaml()
    rt.dump(rt.load(text), out)
    assert out.getvalue() == text


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_preset_values_are_the_papers(name, params_file):
    expected = {**PAPER[name], **CHOICES[name]}
    assert set(preset_values(name)) == set(expected)
    apply_preset(name, params_file)
    written = yaml.safe_load(params_file.read_text())
    wrong = {key: _get(written, key) for key, value in expected.items() if not _same(_get(written, key), value)}
    assert wrong == {}


def test_paper_values_differ_from_default_where_the_docs_say():
    default = yaml.safe_load((REPO / "params.yaml").read_text())
    assert _get(default, "cams.scales") != PAPER["voc"]["cams.scales"]
    assert _get(default, "pseudo_labels.pad_size") == 128


# What only the synthetic presets set: the generated set's size and the stand-in pre-training.
SYNTHETIC_ONLY = {"synthetic.train_aug", "synthetic.train", "synthetic.val", "synthetic.min_side",
                  "synthetic.max_side", "pretrain.epochs"}


def test_synthetic_sets_every_key_any_preset_sets():
    keys = {name: set(preset_values(name)) for name in PRESETS}
    assert keys["voc"] == keys["coco"] and len(keys["voc"]) == 65
    assert keys["synthetic"] == keys["synthetic-large"] == keys["voc"] | SYNTHETIC_ONLY


def test_synthetic_on_the_default_changes_nothing(params_file):
    before = params_file.read_bytes()
    assert apply_preset("synthetic", params_file) == []
    assert params_file.read_bytes() == before
    default = yaml.safe_load(before)
    synthetic = yaml.safe_load((REPO / "sipe/presets/synthetic.yaml").read_text())
    assert all(_same(_get(default, key), _get(synthetic, key)) for key in preset_values("synthetic"))


@pytest.mark.parametrize("name, changed", [("voc", 21), ("coco", 22)])
def test_preset_then_synthetic_restores_the_bytes(name, changed, params_file):
    before = params_file.read_bytes()
    keys = apply_preset(name, params_file)
    assert len(keys) == changed and "pseudo_labels.pad_size" in keys and "cams.scales" in keys
    assert params_file.read_bytes() != before
    assert apply_preset(name, params_file) == []  # idempotent
    assert sorted(apply_preset("synthetic", params_file)) == sorted(keys)
    assert params_file.read_bytes() == before


def test_synthetic_large_scales_the_default_and_synthetic_restores_it(params_file):
    before = params_file.read_bytes()
    keys = apply_preset("synthetic-large", params_file)
    assert set(keys) == SYNTHETIC_ONLY | {"sipe.crop", "sipe.resize_long", "irn.crop", "irn.epochs",
                                           "pseudo_labels.pad_size", "deeplab.crop", "deeplab.iterations"}
    large = yaml.safe_load(params_file.read_text())
    assert large["synthetic"]["train_aug"] == 2 * yaml.safe_load(before)["synthetic"]["train_aug"]
    assert set(apply_preset("voc", params_file)).isdisjoint(SYNTHETIC_ONLY)  # voc leaves the synthetic set alone
    apply_preset("synthetic", params_file)  # ... and synthetic restores everything
    assert params_file.read_bytes() == before


def test_voc_then_coco_then_synthetic(params_file):
    before = params_file.read_bytes()
    apply_preset("voc", params_file)
    assert set(apply_preset("coco", params_file)) == {
        "dataset", "sipe.variants", "cams.shards", "refine.method", "refine.shards", "deeplab.weights",
        "deeplab.style", "deeplab.iterations", "deeplab.shards"}
    apply_preset("synthetic", params_file)
    assert params_file.read_bytes() == before


@pytest.mark.parametrize("name", PRESETS)
def test_written_file_keeps_every_comment_and_passes_the_schema(name, params_file):
    before = params_file.read_text()
    apply_preset("voc" if name == "synthetic" else name, params_file)
    apply_preset(name, params_file)
    after = params_file.read_text()
    assert _comments(after) == _comments(before)
    assert [line for line in after.splitlines() if line.startswith("#")] == \
        [line for line in before.splitlines() if line.startswith("#")]
    validate_params(yaml.safe_load(after))


def test_unknown_preset_is_one_line_naming_the_choices(params_file):
    before = params_file.read_bytes()
    with pytest.raises(ConfigError) as info:
        apply_preset("cityscapes", params_file)
    assert str(info.value) == "unknown preset 'cityscapes': choose one of synthetic, synthetic-large, voc, coco"
    assert params_file.read_bytes() == before


def test_invalid_result_is_not_written(params_file):
    params_file.write_text(params_file.read_text().replace("  max_side: 176", "  max_side: 100"))
    before = params_file.read_bytes()
    with pytest.raises(ConfigError, match="min_side"):
        apply_preset("voc", params_file)
    assert params_file.read_bytes() == before


def test_missing_key_or_file_is_a_config_error(tmp_path, params_file):
    with pytest.raises(ConfigError, match="not found"):
        apply_preset("voc", tmp_path / "absent.yaml")
    params_file.write_text(params_file.read_text().replace("  exp_times: 8", "  # exp_times: 8"))
    with pytest.raises(ConfigError, match="'pseudo_labels.exp_times'"):
        apply_preset("voc", params_file)


def test_the_preset_command_switches_and_restores_the_file(tmp_path, capsys):
    from sipe.cli import main

    params = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_bytes()
    params.write_bytes(original)
    assert main(["preset", "coco", "--params", str(params)]) == 0
    assert "preset coco: 22 keys changed: dataset," in capsys.readouterr().out
    assert main(["preset", "synthetic", "--params", str(params)]) == 0
    assert params.read_bytes() == original
    assert main(["preset", "synthetic", "--params", str(params)]) == 0
    assert "already set, nothing changed" in capsys.readouterr().out
