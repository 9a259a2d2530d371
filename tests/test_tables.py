"""The localisation table (paper Tab. 4 layout) from evaluation summaries, and the HTML pages of the tables."""

from __future__ import annotations

import html
import json
import re

import pandas as pd

from sipe.stages.tables import (
    localisation_table,
    refinement_table,
    summary_table,
    write_table,
)


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


def _cells(page: str) -> list[list[str]]:
    """The body rows of an HTML table page as lists of cell texts (HTML entities decoded)."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body)]


def test_html_page_shows_the_csv_numbers_beside_the_paper(tmp_path):
    paths = [_summary(tmp_path / "sipe/eval_cams", 0.41, 0.25, 0.6123),
             _summary(tmp_path / "nogsc/eval_cams", 0.38, 0.2, 0.455)]
    write_table(localisation_table(paths, "voc"), tmp_path / "loc.csv", "Localisation <VOC>")
    page = (tmp_path / "loc.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "http" not in page  # self-contained
    assert "<h1>Localisation &lt;VOC&gt;</h1>" in page  # title escaped
    csv = pd.read_csv(tmp_path / "loc.csv")
    rows = _cells(page)
    assert [row[0] for row in rows] == csv["method"].tolist()
    assert [row[3] for row in rows] == [f"{v:.2f}" for v in csv["mIoU"]] == ["38.00", "45.50", "61.23", "41.00"]
    assert [row[4] for row in rows] == ["50.10", "53.20", "58.60", "\u2014"]  # paper beside ours; none: a dash
    assert [row[2] for row in rows] == ["0.20", "\u2014", "\u2014", "0.25"]
    assert page.count('<td class="num paper">') == 3 and page.count('<td class="missing paper">') == 1  # shaded
    assert "Tab. 4 (PASCAL VOC 2012 train: CAM 50.1, IS-CAM without GSC 53.2, SIPE 58.6)" in page  # the note
    assert "nan" not in page.lower().replace("nanum", "")


def test_html_page_of_refinement_and_summary(tmp_path):
    cams = _summary(tmp_path / "sipe/eval_cams", 0.3, 0.2, 0.5)
    (tmp_path / "crf.json").write_text(json.dumps({"mIoU": 0.6}))
    (tmp_path / "ir.json").write_text(json.dumps({"confident_mIoU": 0.7, "coverage": 0.8, "fg_precision": 0.9,
                                                  "bg_precision": 0.95}))
    table = refinement_table(cams, tmp_path / "crf.json", tmp_path / "ir.json", None, "voc")
    write_table(table, tmp_path / "refinement.csv", "Refinement")
    rows = _cells((tmp_path / "refinement.html").read_text())
    assert [row[1] for row in rows] == ["50.00", "60.00", "70.00"]
    assert [row[5] for row in rows] == ["58.60", "64.70", "\u2014"]
    assert rows[2][2:5] == ["80.00", "90.00", "95.00"]
    summary = summary_table({"deeplab_crf": tmp_path / "crf.json"}, "voc")
    write_table(summary, tmp_path / "summary.csv", "Summary")
    page = (tmp_path / "summary.html").read_text()
    assert _cells(page) == [["DeepLabV2, MSC + denseCRF", "val", "60.00", "68.80",
                             "paper Tab. 2, ResNet-101 (test 69.7); CRF and MSC not stated"]]
    assert "COCO (DeepLabV2, MSC + denseCRF 40.6)" in page  # the note names the reported numbers
