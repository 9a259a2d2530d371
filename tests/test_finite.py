"""Finite numbers only: map files, class labels, checkpoints and settings holding NaN or an infinity stop the
command with one line naming the file (and the array, tensor or key); the schema refuses them for Snakemake too."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import yaml

from sipe.cli import main
from sipe.config import SCHEMA_PATH, validate_params
from sipe.errors import ConfigError
from sipe.maps import load_maps, map_path, save_maps
from tests.cams.tiny import LABELS, TRAIN, make_dataset, masks, perfect_maps
from tests.tiny import REPO

REPO_PARAMS = REPO / "params.yaml"
BAD = pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])


def _run(capsys, argv: list) -> str:
    """Run ``sipe argv``; assert exit status 1 and exactly one line on stderr; return that line."""
    code = main([str(a) for a in argv])
    err = [line.rsplit("\r", 1)[-1] for line in capsys.readouterr().err.split("\n")]
    err = [line for line in err if line.strip()]
    assert code == 1, err
    assert len(err) == 1, err
    return err[0]


# --- map files (eval-cams, crf, ir-labels, cam-overlays read them with sipe.maps.load_maps) ----------

@pytest.fixture
def cams_data(tmp_path):
    """The tiny dataset of tests/cams and a folder with a good map file for each train image."""
    manifest = make_dataset(tmp_path / "data")
    maps = tmp_path / "maps"
    for image_id in TRAIN:
        save_maps(map_path(maps, image_id), *perfect_maps(masks()[image_id], LABELS[image_id]))
    return manifest, maps


@BAD
@pytest.mark.parametrize("array", ["cam", "is_cam"])
def test_map_with_non_finite_values_stops_eval_cams(tmp_path, capsys, cams_data, bad, array):
    manifest, maps = cams_data
    keys, cam, is_cam = perfect_maps(masks()["img1"], LABELS["img1"])
    arrays = {"keys": keys, "cam": cam.astype(np.float16), "is_cam": is_cam.astype(np.float16)}
    arrays[array][-1, 2, 3] = bad
    with open(map_path(maps, "img1"), "wb") as handle:  # save_maps refuses to write it: write it by hand
        np.savez_compressed(handle, **arrays)
    out = tmp_path / "eval"
    line = _run(capsys, ["eval-cams", "--params", REPO_PARAMS, "--data", manifest.root, "--maps", maps, "--out", out])
    assert line == f"sipe eval-cams: error: {map_path(maps, 'img1')}: {array} holds NaN or infinite values"
    assert not out.exists()


def test_finite_maps_still_load(cams_data):
    _, maps = cams_data
    keys, cam, is_cam = load_maps(map_path(maps, "img0"))
    assert keys.tolist() == [0, *LABELS["img0"]] and np.isfinite(cam).all() and np.isfinite(is_cam).all()


# --- checkpoints (sipe.io.read_torch_file: torch.load(weights_only=True)) ------------------------

@BAD
def test_checkpoint_with_non_finite_tensor_names_the_tensor(tmp_path, capsys, bad):
    src = tmp_path / "final.pth"
    weight = torch.zeros(4, 3)
    weight[1, 2] = bad
    torch.save({"net": {"conv1.weight": torch.ones(2), "classifier.weight": weight,
                        "steps": torch.tensor([3])}}, src)
    out = tmp_path / "model.pt"
    line = _run(capsys, ["convert-checkpoint", "--src", src, "--out", out])
    assert line == (f"sipe convert-checkpoint: error: {src}: SIPE reference checkpoint tensor net.classifier.weight "
                    f"holds NaN or infinite values")
    assert not out.exists()


def test_model_checkpoint_with_nan_stops_a_stage(tmp_path, capsys, cams_data):
    """A pipeline model file (train-sipe's model.pt) read by make-cams: the tensor is named by its keys."""
    manifest, _ = cams_data
    model = tmp_path / "model.pt"
    state = {"backbone.conv1.weight": torch.ones(2, 2), "classifier.weight": torch.full((3, 4), math.nan,
                                                                                      dtype=torch.float16)}
    torch.save({"model": state, "config": {"num_classes": 3}, "meta": {"lr": 0.1}}, model)
    out = tmp_path / "maps_out"
    line = _run(capsys, ["make-cams", "--params", REPO_PARAMS, "--data", manifest.root, "--model", model,
                         "--out", out, "--device", "cpu"])
    assert line == (f"sipe make-cams: error: {model}: SIPE checkpoint tensor model.classifier.weight "
                    f"holds NaN or infinite values")
    assert not out.exists()


def test_init_weights_with_inf_are_refused(tmp_path, capsys):
    src = tmp_path / "init.pth"
    torch.save({"layer1.0.bn1.running_var": torch.tensor([1.0, math.inf])}, src)
    line = _run(capsys, ["convert-deeplab-init", "--src", src, "--out", tmp_path / "out.pth"])
    assert line == (f"sipe convert-deeplab-init: error: {src}: DeepLab initialisation tensor layer1.0.bn1.running_var "
                    f"holds NaN or infinite values")


# --- settings: sipe (sipe.config) and Snakemake (snakemake.utils.validate on the same schema) ------

def _params(key: str | None = None, value=None) -> dict:
    """The repository's settings, with dotted ``key`` (a list item by its index, e.g. "cams.scales.1") set to
    ``value``."""
    params = yaml.safe_load(REPO_PARAMS.read_text())
    if key is not None:
        section, name, *index = key.split(".")
        if index:
            params[section][name][int(index[0])] = value
        else:
            params[section][name] = value
    return params


@BAD
@pytest.mark.parametrize("key", ["sipe.lr", "deeplab.grad_clip", "cams.scales.1", "crf.gt_prob"])
def test_params_non_finite_number_names_the_key(tmp_path, capsys, bad, key):
    params = _params(key, bad)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    line = _run(capsys, ["check-params", "--params", path])
    assert line == f"sipe check-params: error: {path}: {key}: {bad} is not a finite number"


@BAD
def test_params_written_by_hand(tmp_path, capsys, bad):
    text = REPO_PARAMS.read_text()
    literal = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[str(bad)]
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("\n  lr: ", f"\n  lr: {literal} # was ", 1))
    line = _run(capsys, ["check-params", "--params", path])
    assert line == f"sipe check-params: error: {path}: sipe.lr: {bad} is not a finite number"


@BAD
@pytest.mark.parametrize("key", ["sipe.lr", "pseudo_labels.beta", "cams.scales.0", "eval_cams.bg_thresholds.0"])
def test_schema_refuses_non_finite_numbers(bad, key):
    """The schema alone (what Snakemake's validate(config, schema) applies) refuses them."""
    jsonschema = pytest.importorskip("jsonschema")
    params = _params(key, bad)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(params))
    assert errors and all(".".join(map(str, e.path)) == key for e in errors)
    # the finite rule itself fires, not only a bound of this key (which a future key may lack)
    largest = 1.7976931348623157e308
    assert any(e.validator == "not" or e.validator_value in (largest, -largest) for e in errors), errors


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])  # -inf: every number has a lower bound
def test_snakemake_validate_refuses_non_finite_numbers(bad):
    snakemake_utils = pytest.importorskip("snakemake.utils")
    exceptions = pytest.importorskip("snakemake.exceptions")
    params = _params()
    params["sipe"]["lr"] = bad
    with pytest.raises(exceptions.WorkflowError, match="lr"):
        snakemake_utils.validate(copy.deepcopy(params), str(SCHEMA_PATH))
    snakemake_utils.validate(_params(), str(SCHEMA_PATH))  # the shipped file passes


def test_finite_rule_leaves_other_values_alone():
    params = _params()
    params["sipe"]["lr"] = 1e-300
    params["deeplab"]["grad_clip"] = None
    validate_params(params)
    params["sipe"]["lr"] = "fast"
    with pytest.raises(ConfigError, match="sipe.lr: 'fast' is not of type 'number'"):
        validate_params(params)
