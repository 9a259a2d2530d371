"""The raw dataset is an input of preparation in both tools (sipe/data/raw.py, docs/datasets.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from sipe.data.raw import tree_digest
from tests.conftest import copy_repo, job_counts, run
from tests.data.fixtures import A, make_sbd_tree, make_voc_tree, voc_mask, write_palette_png


def test_the_digest_follows_a_rewritten_file_deep_in_the_tree(tmp_path):
    voc = make_voc_tree(tmp_path / "VOC2012")
    before = tree_digest([str(voc)])
    assert tree_digest([str(voc)]) == before
    png = voc / "SegmentationClass" / f"{A}.png"
    stat = png.stat()
    os.utime(voc / "SegmentationClass", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the folder's date is no help
    os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert tree_digest([str(voc)]) != before
    assert tree_digest([str(tmp_path / "missing")]) != before


def _planned(repo: Path, *targets: str) -> dict[str, int]:
    out = run(["snakemake", "-n", *targets, "--quiet", "rules"], cwd=repo)
    return job_counts(out.stdout + out.stderr)


@pytest.mark.slow
def test_a_changed_raw_annotation_reruns_preparation_in_both_tools(tmp_path):
    voc = make_voc_tree(tmp_path / "raw/VOCdevkit/VOC2012")
    sbd = make_sbd_tree(tmp_path / "raw/benchmark_RELEASE/dataset")
    repo = copy_repo(tmp_path / "repo", dataset="voc", voc={"root": str(voc), "sbd_root": str(sbd)})
    deps = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["prepare_data"]["deps"]
    assert str(voc) in deps and str(sbd) in deps
    everything = _planned(repo)
    run(["snakemake", "--cores", "2", "data/voc"], cwd=repo)
    run(["dvc", "commit", "--force", "prepare_data"], cwd=repo)  # DVC records this partial run by hand
    assert _planned(repo, "data/voc") == {}
    assert json.loads(run(["dvc", "status", "--json", "prepare_data"], cwd=repo).stdout) == {}

    mask = voc_mask(A)
    mask[0, 0] = 0 if mask[0, 0] else 1  # one pixel of one annotation
    write_palette_png(voc / "SegmentationClass" / f"{A}.png", mask)

    assert _planned(repo, "data/voc") == {"prepare_data": 1}
    assert _planned(repo) == everything  # and everything after it
    changed = json.loads(run(["dvc", "status", "--json", "prepare_data"], cwd=repo).stdout)["prepare_data"]
    assert {"changed deps": {str(voc): "modified"}} in changed
