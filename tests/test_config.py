"""params.yaml and its schema: the shipped file is valid; bad settings stop with one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from sipe.config import load_params, validate_params
from sipe.errors import ConfigError
from tests.conftest import REPO


def _params():
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_shipped_params_are_valid():
    assert load_params(REPO / "params.yaml")["dataset"] == "synthetic"


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["synthetic"].update(colour=3), "params.yaml: unknown key 'synthetic.colour'"),
    (lambda p: p.update(extra=1), "params.yaml: unknown key 'extra'"),
    (lambda p: p["synthetic"].update(seed="seven"), "params.yaml: synthetic.seed: 'seven' is not of type 'integer'"),
    (lambda p: p["synthetic"].update(num_classes=21), "params.yaml: synthetic.num_classes: 21 is greater than the maximum of 20"),
    (lambda p: p["synthetic"].update(train_aug=0), "params.yaml: synthetic.train_aug: 0 is less than the minimum of 1"),
    (lambda p: p.update(dataset="imagenet"), "params.yaml: dataset: 'imagenet' is not one of ['synthetic', 'voc', 'coco']"),
    (lambda p: p["coco"].update(crowd="drop"), "params.yaml: coco.crowd: 'drop' is not one of ['class', 'ignore']"),
    (lambda p: p["synthetic"].update(train=500), "params.yaml: synthetic.train: 500 exceeds synthetic.train_aug (360)"),
    (lambda p: p["synthetic"].update(min_side=300), "params.yaml: synthetic.min_side: 300 exceeds synthetic.max_side (176)"),
    (lambda p: p.pop("voc"), "params.yaml: 'voc' is a required property"),
])
def test_bad_settings_name_the_key(edit, message):
    params = _params()
    edit(params)
    with pytest.raises(ConfigError) as info:
        validate_params(params)
    assert str(info.value) == message


def test_cli_reports_bad_params_in_one_line_and_exits_non_zero(tmp_path):
    params = _params()
    params["synthetic"]["border"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, "-m", "sipe", "prepare-data", "--params", str(bad), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"sipe prepare-data: error: {bad}: synthetic.border: -1 is less than the minimum of 0"]
    assert not (tmp_path / "out").exists()


def test_cli_reports_unparsable_yaml(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("dataset: [unclosed\n")
    proc = subprocess.run([sys.executable, "-m", "sipe", "check-params", "--params", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"sipe check-params: error: {bad}: not valid YAML (line 2)"
