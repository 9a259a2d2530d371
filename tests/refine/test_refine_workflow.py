"""The refinement rules in the Snakemake DAG: outputs of the tiny whole-DAG run, and the refine.method switch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sipe.io import read_label_png
from sipe.models.irn import load_irn
from tests.conftest import copy_repo, run

REFINE = "results/synthetic/refine"


def test_refinement_outputs(snakemake_run: Path):
    refine = snakemake_run / REFINE
    for folder in ("crf", "ir_labels", "pseudo_labels"):
        assert len(list((refine / folder).glob("*.png"))) == 24  # every train_aug image, by two shard jobs
        assert json.loads((refine / folder / "index.json").read_text())["count"] == 24
        assert (refine / folder / "shards" / "2-of-2.json").is_file()
        summary = json.loads((refine / f"{folder}_eval" / "summary.json").read_text())
        assert {"mIoU", "coverage", "confident_mIoU", "fg_precision", "bg_precision"} <= set(summary)
        assert summary["num_images"] == 8 and 0.0 <= summary["mIoU"] <= 1.0
    crf = json.loads((refine / "crf_eval" / "summary.json").read_text())
    ir = json.loads((refine / "ir_labels_eval" / "summary.json").read_text())
    assert ir["mIoU"] == crf["mIoU"] and crf["coverage"] == 1.0  # IR labels with 255 -> 0 are the +dCRF labels
    some = sorted((refine / "pseudo_labels").glob("*.png"))[0]
    assert 255 not in np.unique(read_label_png(some))
    load_irn(refine / "irn" / "model.pt", backbone="resnet18")
    assert (refine / "irn" / "train" / "loss.png").is_file()
    table = (snakemake_run / "results/synthetic/refinement.csv").read_text().splitlines()
    assert table[0] == "labels,mIoU,coverage,fg_precision,bg_precision,paper_voc_mIoU" and len(table) == 5
    for name in ("crf_1-of-2", "ir_labels_2-of-2", "train_irn", "pseudo_labels_1-of-2", "eval_labels_crf"):
        assert (snakemake_run / "logs/synthetic" / f"{name}.log").stat().st_size > 0


@pytest.mark.slow
def test_crf_configuration_runs_end_to_end_without_irn(tmp_path):
    """Test configuration dag-crf (refine.method crf, the paper's COCO mode): DeepLab trains on the IR labels."""
    repo = copy_repo(tmp_path, config="dag-crf")
    out = run(["snakemake", "-n", "--quiet", "rules"], cwd=repo).stdout
    assert "crf" in out and "ir_labels" in out and "refinement_table" in out
    assert "train_irn" not in out and "pseudo_labels" not in out
    dag = run(["snakemake", "-n", "-p"], cwd=repo).stdout
    assert "--pseudo-eval" not in dag and "--ir-eval results/synthetic/refine/ir_labels_eval/summary.json" in dag
    assert "train-deeplab --params params.yaml --data data/synthetic --labels results/synthetic/refine/ir_labels " in dag
    run(["snakemake", "--cores", "2"], cwd=repo)
    assert not (repo / REFINE / "irn").exists() and not (repo / REFINE / "pseudo_labels").exists()
    assert len((repo / "results/synthetic/refinement.csv").read_text().splitlines()) == 4  # no IRN row
    summary = (repo / "results/synthetic/summary.csv").read_text()
    assert "DeepLabV2, MSC + denseCRF" in summary and "Pseudo labels" in summary
