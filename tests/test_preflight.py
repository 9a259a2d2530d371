"""Checks before a run (sipe/preflight.py): missing raw data or weights stop `snakemake -n` with the stage's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipe.errors import SipeError
from sipe.preflight import preflight
from tests.conftest import copy_repo, run
from tests.data.fixtures import make_coco_tree, make_sbd_tree, make_voc_tree
from tests.tiny import merged, repo_params


def voc_params(tmp_path: Path) -> dict:
    return merged(repo_params(), {"dataset": "voc", "voc": {"root": str(tmp_path / "VOC2012"),
                                                           "sbd_root": str(tmp_path / "sbd")}})


def test_a_complete_raw_voc_tree_passes_and_a_missing_list_stops(tmp_path):
    params = voc_params(tmp_path)
    make_voc_tree(tmp_path / "VOC2012")
    make_sbd_tree(tmp_path / "sbd")
    preflight(params, tmp_path / "data/voc")
    (tmp_path / "sbd/val.txt").unlink()
    with pytest.raises(SipeError, match=r"^sipe prepare-data: error: .*sbd/val.txt: SBD list not found"):
        preflight(params, tmp_path / "data/voc")


def test_a_prepared_dataset_needs_no_raw_files(tmp_path):
    (tmp_path / "data/voc").mkdir(parents=True)
    (tmp_path / "data/voc/dataset.json").write_text("{}")
    preflight(voc_params(tmp_path), tmp_path / "data/voc")


def test_coco_and_weights_files(tmp_path):
    coco = merged(repo_params(), {"dataset": "coco", "coco": {"root": str(tmp_path / "coco")}})
    with pytest.raises(SipeError, match=r"^sipe prepare-data: error: .*coco: COCO 2014 root not found"):
        preflight(coco, tmp_path / "data/coco")
    make_coco_tree(tmp_path / "coco")
    preflight(coco, tmp_path / "data/coco")
    missing = merged(coco, {"deeplab": {"weights": str(tmp_path / "init.pth")}})
    with pytest.raises(SipeError, match=r"^sipe train-deeplab: error: .*init.pth: resnet18 weights file not found$"):
        preflight(missing, tmp_path / "data/coco")


def _dry_run(repo: Path):
    proc = run(["snakemake", "-n"], cwd=repo, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("overrides, command", [
    ({"dataset": "voc"}, ["prepare-data", "--params", "params.yaml", "--out", "data/voc"]),
    ({"sipe": {"weights": "imagenet"}}, None),
])
def test_dry_run_stops_with_the_first_stages_line(tmp_path, monkeypatch, overrides, command):
    repo = copy_repo(tmp_path / "repo", **overrides)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: no ImageNet file
    code, out = _dry_run(repo)
    lines = [line for line in out.splitlines() if line.startswith("sipe ")]
    assert code != 0 and len(lines) == 1, out
    if command is not None:  # the same line as the stage itself prints
        stage = run(["python", "-m", "sipe", *command], cwd=repo, check=False)
        assert stage.returncode == 1 and stage.stderr.strip().splitlines()[-1] == lines[0]
    else:
        assert lines[0].startswith("sipe train-sipe: error: ImageNet weights for resnet18 not found")
    assert not list(repo.glob("results/*/")) and not list(repo.glob("data/*/"))  # nothing ran


def test_a_duplicate_key_in_params_stops_the_dry_run(tmp_path):
    """Snakemake's own loader keeps the last of two equal keys; the workflow refuses the file when it is read."""
    repo = copy_repo(tmp_path / "repo")
    with open(repo / "params.yaml", "a") as params:
        params.write("dataset: synthetic\n")
    code, out = _dry_run(repo)
    assert code != 0 and "params.yaml: duplicate key 'dataset'" in out
