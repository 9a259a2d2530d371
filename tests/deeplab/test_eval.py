"""eval-seg on hand-made label maps (tests/cams/tiny.py masks), with the scores worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sipe.errors import SipeError
from sipe.io import save_label_png
from sipe.stages.deeplab import eval_seg
from tests.cams.tiny import make_dataset, masks


def _predictions(folder):
    """img0: class 2 predicted as class 1 and the void pixels as 3; img1 perfect; img2 all background.

    Confusion (rows GT 0..3, columns prediction): [[428,0,0,0], [24,16,0,0], [0,20,0,0], [12,0,0,20]].
    """
    m = masks()
    pred0 = m["img0"].copy()
    pred0[pred0 == 2] = 1
    pred0[pred0 == 255] = 3
    save_label_png(folder / "img0.png", pred0)
    save_label_png(folder / "img1.png", m["img1"])
    save_label_png(folder / "img2.png", np.zeros_like(m["img2"]))


def test_scores_match_the_hand_computed_confusion(tmp_path):
    make_dataset(tmp_path / "data")
    _predictions(tmp_path / "pred")
    scores = eval_seg(tmp_path / "data", tmp_path / "pred", tmp_path / "eval", split="train")
    iou = [428 / 464, 16 / 60, 0 / 20, 20 / 32]
    assert np.allclose(scores["iou"], iou)
    summary = json.loads((tmp_path / "eval/summary.json").read_text())
    assert math.isclose(summary["mIoU"], sum(iou) / 4)
    assert math.isclose(summary["pixel_acc"], 464 / 520)
    assert math.isclose(summary["mean_acc"], (1 + 16 / 40 + 0 + 20 / 32) / 4)
    assert math.isclose(summary["fw_iou"], (428 * iou[0] + 40 * iou[1] + 20 * iou[2] + 32 * iou[3]) / 520)
    assert summary["num_images"] == 3 and summary["num_pixels"] == 520
    table = pd.read_csv(tmp_path / "eval/per_class.csv")
    assert table["name"].tolist() == ["background", "a", "b", "c"]
    assert table["gt_pixels"].tolist() == [428, 40, 20, 32] and table["pred_pixels"].tolist() == [464, 36, 0, 20]


def test_missing_or_ignore_predictions_are_errors(tmp_path):
    make_dataset(tmp_path / "data")
    _predictions(tmp_path / "pred")
    (tmp_path / "pred/img1.png").unlink()
    with pytest.raises(SipeError, match=r"pred: no label PNG for 1 of 3 images: img1"):
        eval_seg(tmp_path / "data", tmp_path / "pred", tmp_path / "eval", split="train")
    save_label_png(tmp_path / "pred/img1.png", np.full((10, 14), 255, np.uint8))
    with pytest.raises(SipeError, match=r"img1.png: prediction holds 140 pixels of 255"):
        eval_seg(tmp_path / "data", tmp_path / "pred", tmp_path / "eval", split="train")
    assert not (tmp_path / "eval/summary.json").exists()
