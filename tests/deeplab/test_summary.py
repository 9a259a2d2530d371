"""The results summary (paper Tab. 2–3 layout) from the evaluation summaries of the DAG."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sipe.stages.tables import summary_table, write_table


def _write(path, **values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    return path


@pytest.fixture
def summaries(tmp_path):
    return {
        "localisation": _write(tmp_path / "sipe/eval_cams/summary.json", is_cam_mIoU=0.5861, cam_mIoU=0.4),
        "crf": _write(tmp_path / "refine/crf_eval/summary.json", mIoU=0.647),
        "pseudo": _write(tmp_path / "refine/pseudo_labels_eval/summary.json", mIoU=0.68123),
        "deeplab": _write(tmp_path / "deeplab/eval/pred/summary.json", mIoU=0.66, pixel_acc=0.9),
        "deeplab_crf": _write(tmp_path / "deeplab/eval/crf/summary.json", mIoU=0.688),
    }


def test_voc_rows_with_the_paper_beside_ours(summaries, tmp_path):
    table = summary_table(summaries, "voc")
    assert table["method"].tolist() == ["Localisation maps (IS-CAM)", "+ denseCRF",
                                        "Pseudo labels (DeepLab's training labels)", "DeepLabV2, MSC",
                                        "DeepLabV2, MSC + denseCRF"]
    assert table["split"].tolist() == ["train", "train", "train", "val", "val"]
    assert table["mIoU"].tolist() == [58.61, 64.7, 68.12, 66.0, 68.8]
    assert table["paper_mIoU"].tolist()[:2] == [58.6, 64.7] and table["paper_mIoU"].tolist()[4] == 68.8
    assert table["paper_mIoU"].isna().tolist() == [False, False, True, True, False]
    write_table(table, tmp_path / "summary.csv", "Summary")
    assert pd.read_csv(tmp_path / "summary.csv")["mIoU"].tolist() == [58.61, 64.7, 68.12, 66.0, 68.8]
    markdown = (tmp_path / "summary.md").read_text()
    assert "| DeepLabV2, MSC + denseCRF" in markdown and "nan" not in markdown


def test_coco_and_synthetic_and_missing_rows(summaries):
    coco = summary_table(summaries, "coco")
    assert coco["paper_mIoU"].tolist()[4] == 40.6 and coco["paper_mIoU"].isna().sum() == 4
    synthetic = summary_table({"localisation": summaries["localisation"], "deeplab": summaries["deeplab"]},
                              "synthetic")
    assert synthetic.columns.tolist() == ["method", "split", "mIoU"]
    assert synthetic["method"].tolist() == ["Localisation maps (IS-CAM)", "DeepLabV2, MSC"]
    with pytest.raises(ValueError, match="unknown summary rows: irn"):
        summary_table({"irn": summaries["crf"]}, "voc")
