"""Headline metrics (sipe/stages/ledger.py) and the paper-layout comparison of experiments (sipe/experiments.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sipe.cli import main
from sipe.experiments import compare_tables


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def results(tmp_path: Path) -> dict[str, list[Path]]:
    r = tmp_path / "results"
    return {
        "eval_cams": [_write(r / "sipe/eval_cams/summary.json", {"cam_mIoU": 0.3612, "is_cam_mIoU": 0.37934}),
                      _write(r / "nogsc/eval_cams/summary.json", {"cam_mIoU": 0.36681, "is_cam_mIoU": 0.369})],
        "eval_labels": [_write(r / "refine/crf_eval/summary.json", {"mIoU": 0.3986, "confident_mIoU": 0.3986}),
                        _write(r / "refine/ir_labels_eval/summary.json", {"mIoU": 0.30, "confident_mIoU": 0.4047}),
                        _write(r / "refine/pseudo_labels_eval/summary.json", {"mIoU": 0.3622})],
        "eval_seg": [_write(r / "deeplab/eval/pred/summary.json", {"mIoU": 0.2589}),
                     _write(r / "deeplab/eval/crf/summary.json", {"mIoU": 0.2484})],
        "training": [_write(r / "sipe/train/train.json", {"final_losses": {"loss": 0.61234567, "loss_gsc": 0.1}}),
                     _write(r / "refine/irn/train/train.json", {"final_losses": {"loss": 0.7}})],
    }


def _cli(out: Path, results: dict[str, list[Path]]) -> list[str]:
    args = ["headline-metrics", "--out", str(out)]
    for option, paths in results.items():
        args += [f"--{option.replace('_', '-')}", *map(str, paths)]
    return args


def test_headline_metrics_are_the_paper_rows_in_percent_and_the_final_losses(tmp_path, results):
    out = tmp_path / "metrics.json"
    assert main(_cli(out, results)) == 0
    assert json.loads(out.read_text()) == {
        "localisation": {"cam": 36.68, "is_cam_nogsc": 36.9, "cam_gsc": 36.12, "sipe": 37.93},
        "refinement": {"crf": 39.86, "ir_labels": 40.47, "pseudo_labels": 36.22},  # IR labels: confident pixels
        "segmentation": {"val": 25.89, "val_crf": 24.84},
        "final_loss": {"sipe": 0.6123, "irn": 0.7},
    }


def test_a_configuration_without_a_stage_leaves_its_rows_out(tmp_path, results):
    """refine.method crf and deeplab.crf false: no pseudo labels, no val_crf, no IRN training."""
    results["eval_labels"] = results["eval_labels"][:2]
    results["eval_seg"] = results["eval_seg"][:1]
    results["training"] = results["training"][:1]
    out = tmp_path / "metrics.json"
    assert main(_cli(out, results)) == 0
    metrics = json.loads(out.read_text())
    assert "pseudo_labels" not in metrics["refinement"] and metrics["segmentation"] == {"val": 25.89}
    assert metrics["final_loss"] == {"sipe": 0.6123}


def test_a_summary_without_its_number_is_one_line_naming_it(tmp_path, results, capsys):
    _write(results["eval_seg"][0], {"pixel_acc": 0.5})
    assert main(_cli(tmp_path / "metrics.json", results)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deeplab/eval/pred/summary.json" in err[0] and "mIoU" in err[0]
    assert not (tmp_path / "metrics.json").exists()


def test_compare_puts_experiments_side_by_side_and_lists_the_settings_that_differ():
    rows = [
        {"name": "workspace", "Experiment": None, "rev": "workspace", "results/voc/metrics.json:localisation.sipe": 58.6,
         "localisation.cam": 50.1, "refinement.crf": 64.7, "sipe.gsc": True, "sipe.lr": 0.1, "cams.scales": [1.0, 0.5]},
        {"name": "no-gsc", "Experiment": "no-gsc", "rev": "abc1234", "results/voc/metrics.json:localisation.sipe": 53.2,
         "localisation.cam": 50.1, "refinement.crf": 60.0, "sipe.gsc": False, "sipe.lr": 0.1, "cams.scales": [1.0]},
    ]
    tables = dict(compare_tables(rows))
    tab1 = tables["Tab. 1 - localisation maps, train mIoU"]
    assert list(tab1.columns) == ["", "workspace", "no-gsc"]
    assert tab1.values.tolist() == [["SIPE (IS-CAM)", 58.6, 53.2], ["+ denseCRF", 64.7, 60.0]]
    tab4 = tables["Tab. 4 - IPE and GSC, train mIoU"]
    assert tab4.values.tolist() == [["CAM baseline", 50.1, 50.1], ["+ IPE + GSC: SIPE", 58.6, 53.2]]
    differ = tables["Settings that differ"]
    assert differ.values.tolist() == [["cams.scales", "[1.0, 0.5]", "[1.0]"], ["sipe.gsc", True, False]]
    assert "Final training loss" not in tables  # no experiment has a loss
