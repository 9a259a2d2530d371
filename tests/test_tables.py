"""The localisation table (paper Tab. 4 layout) from evaluation summaries."""

from __future__ import annotations

import json

import pandas as pd

from sipe.stages.tables import localisation_table, write_table


def _summary(folder, cam, threshold, is_cam):
    folder.mkdir(parents=True)
    path = folder / "summary.json"
    path.write_text(json.dumps({"cam_mIoU": cam, "cam_best_threshold": threshold, "is_cam_mIoU": is_cam}))
    return path


def test_table_rows_numbers_and_paper_column(tmp_path):
    paths = [_summary(tmp_path / "sipe/eval_cams", 0.41, 0.25, 0.6123),
             _summary(tmp_path / "nogsc/eval_cams", 0.38, 0.2, 0.455)]
    table = localisation_table(paths, "voc")
    assert table["method"].tolist() == [
        "CAM baseline (best background threshold)", "IS-CAM without GSC", "SIPE: IS-CAM with GSC",
        "CAM of the GSC-trained model (best background threshold)"]
    assert table["mIoU"].tolist() == [38.0, 45.5, 61.23, 41.0]
    assert table["paper_voc_mIoU"].tolist()[:3] == [50.1, 53.2, 58.6]
    assert table["bg_threshold"].tolist()[0] == 0.2
    write_table(table, tmp_path / "loc.csv", "Localisation")
    assert pd.read_csv(tmp_path / "loc.csv")["mIoU"].tolist() == [38.0, 45.5, 61.23, 41.0]
    markdown = (tmp_path / "loc.md").read_text()
    assert markdown.startswith("# Localisation\n") and "| SIPE: IS-CAM with GSC" in markdown
    assert "nan" not in markdown


def test_table_without_baseline_and_not_voc(tmp_path):
    table = localisation_table([_summary(tmp_path / "sipe/eval_cams", 0.3, 0.15, 0.5)], "synthetic")
    assert table["model"].tolist() == ["sipe", "sipe"]
    assert table["paper_voc_mIoU"].isna().all()
