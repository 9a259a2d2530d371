"""The per-image refinement stages (crf, ir-labels, pseudo-labels), eval-labels and the refinement table
on the hand-made tiny dataset of tests/cams (maps that reproduce the GT)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sipe.maps import load_maps, map_path, save_maps
from sipe.cli import main
from sipe.errors import SipeError
from sipe.io import read_image, read_label_png, save_label_png
from sipe.models.checkpoint import save_model
from sipe.models.irn import IRN
from sipe.refine.crf import CRFSettings
from sipe.refine.ir_labels import confident_labels, crf_label_map
from sipe.stages.refine import crf_labels, ir_labels, pseudo_labels
from sipe.stages.shards import gather_split
from sipe.stages.refine_eval import eval_labels
from sipe.stages.tables import refinement_table
from tests.cams.tiny import (
    LABELS,
    N_VALID,
    TRAIN_AUG,
    make_dataset,
    masks,
    perfect_maps,
)

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """data/ (tiny dataset), maps/ (perfect IS-CAM maps), crf/ and ir/ (the two stages' outputs)."""
    root = tmp_path_factory.mktemp("refine")
    make_dataset(root / "data")
    for image_id, mask in masks().items():
        save_maps(map_path(root / "maps", image_id), *perfect_maps(mask, LABELS[image_id]))
    crf_labels(PARAMS, root / "data", root / "maps", root / "crf")
    ir_labels(PARAMS, root / "data", root / "maps", root / "crf", root / "ir")
    return root


def _inputs(root: Path, image_id: str):
    image = read_image(root / "data" / "JPEGImages" / f"{image_id}.png")
    keys, _, is_cam = load_maps(map_path(root / "maps", image_id))
    return image, keys, is_cam.astype(np.float32)


def test_crf_stage_writes_the_crf_of_each_map(tiny):
    assert sorted(p.stem for p in (tiny / "crf").glob("*.png")) == sorted(TRAIN_AUG)
    index = json.loads((tiny / "crf" / "index.json").read_text())
    assert index["count"] == 4 and index["role"] == "train_aug"
    assert json.loads((tiny / "crf" / "shards" / "1-of-1.json").read_text())["ids"] == TRAIN_AUG
    for image_id in TRAIN_AUG:
        image, keys, is_cam = _inputs(tiny, image_id)
        expected = crf_label_map(image, keys, is_cam, CRFSettings.from_params(PARAMS["crf"]))
        assert np.array_equal(read_label_png(tiny / "crf" / f"{image_id}.png"), expected)


def test_sharded_runs_give_the_same_files(tiny, tmp_path):
    for k in range(2):
        crf_labels(PARAMS, tiny / "data", tiny / "maps", tmp_path / "crf", shard=(k, 2), workers=2)
    assert not (tmp_path / "crf" / "index.json").exists()  # the gather step writes it
    gather_split(tiny / "data", tmp_path / "crf", ".png", "train_aug")
    for image_id in TRAIN_AUG:
        assert (tmp_path / "crf" / f"{image_id}.png").read_bytes() == (tiny / "crf" / f"{image_id}.png").read_bytes()
    assert json.loads((tmp_path / "crf" / "shards" / "2-of-2.json").read_text())["ids"] == TRAIN_AUG[1::2]


def test_ir_labels_combine_the_crf_map_and_an_attenuated_pass(tiny):
    for image_id in TRAIN_AUG:
        image, keys, is_cam = _inputs(tiny, image_id)
        fg_conf = read_label_png(tiny / "crf" / f"{image_id}.png")
        bg_conf = crf_label_map(image, keys, is_cam, CRFSettings.from_params(PARAMS["crf"]), bg_scale=0.5)
        ir = read_label_png(tiny / "ir" / f"{image_id}.png")
        assert np.array_equal(ir, confident_labels(fg_conf, bg_conf))
        assert np.array_equal(np.where(ir == 255, 0, ir), fg_conf)  # uncertain -> background gives the +dCRF map


def test_eval_labels_hand_counted(tiny, tmp_path):
    labels = tmp_path / "labels"
    m = {k: np.where(v == 255, 0, v).astype(np.uint8) for k, v in masks().items()}
    m["img0"][7:11, 10:15] = 255   # the 20 class-2 pixels: uncertain
    m["img0"][0, 0:10] = 1         # 10 background pixels labelled class 1
    for image_id in ("img0", "img1", "img2"):
        save_label_png(labels / f"{image_id}.png", m[image_id])
    result = eval_labels(tiny / "data", labels, tmp_path / "eval")
    assert result == json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert result["coverage"] == pytest.approx(500 / N_VALID)
    assert result["fg_precision"] == pytest.approx(72 / 82) and result["bg_precision"] == 1.0
    # 255 counted as background: bg 418/448, class 1 40/50, class 2 0, class 3 1
    assert result["mIoU"] == pytest.approx((418 / 448 + 0.8 + 0.0 + 1.0) / 4)
    # confident pixels only: class 2 has no confident GT pixel left and drops out of the mean
    assert result["confident_mIoU"] == pytest.approx((418 / 428 + 0.8 + 1.0) / 3)
    per_class = (tmp_path / "eval" / "per_class.csv").read_text().splitlines()
    assert per_class[0].startswith("class_id,name,iou") and len(per_class) == 5


def test_eval_all_ignore_labels(tiny, tmp_path):
    for image_id in ("img0", "img1", "img2"):
        save_label_png(tmp_path / f"{image_id}.png", np.full(masks()[image_id].shape, 255, np.uint8))
    result = eval_labels(tiny / "data", tmp_path, tmp_path / "eval")
    assert result["coverage"] == 0.0 and result["confident_mIoU"] is None
    assert result["fg_precision"] is None and result["bg_precision"] is None
    assert result["mIoU"] == pytest.approx(0.25 * 428 / N_VALID)  # everything background: only bg scores


def test_missing_map_stops_before_writing(tiny, tmp_path, capsys):
    maps = tmp_path / "maps"
    shutil.copytree(tiny / "maps", maps)
    map_path(maps, "img2").unlink()
    with pytest.raises(SipeError, match=r"no map file for 1 of 4 ids: img2 \(run make-cams first\)"):
        crf_labels(PARAMS, tiny / "data", maps, tmp_path / "crf")
    assert not list(tmp_path.glob("crf/*.png"))
    code = main(["crf", "--data", str(tiny / "data"), "--maps", str(maps), "--out", str(tmp_path / "crf"),
                 "--params", str(REPO / "params.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("sipe crf: error: ") and "img2" in err[0]


def test_map_of_another_size_is_one_line(tiny, tmp_path):
    maps = tmp_path / "maps"
    shutil.copytree(tiny / "maps", maps)
    keys, cam, is_cam = perfect_maps(np.zeros((9, 9), np.uint8), [3])
    save_maps(map_path(maps, "img1"), keys, cam, is_cam)
    with pytest.raises(SipeError, match=r"img1.npz: map size \(9, 9\) != image size \(10, 14\) of .*img1.png") as err:
        crf_labels(PARAMS, tiny / "data", maps, tmp_path / "crf")
    assert "\n" not in str(err.value)


def test_ir_labels_need_the_crf_maps(tiny, tmp_path):
    with pytest.raises(SipeError, match="no CRF label map for 4 of 4 ids"):
        ir_labels(PARAMS, tiny / "data", tiny / "maps", tmp_path / "nothing", tmp_path / "ir")


def test_pseudo_labels_stage_and_backbone_check(tiny, tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "irn.pt", IRN("resnet18", weights=None))
    params = {**PARAMS, "sipe": {**PARAMS["sipe"], "backbone": "resnet18"},
              "pseudo_labels": {**PARAMS["pseudo_labels"], "pad_size": 16, "exp_times": 4}}
    pseudo_labels(params, tiny / "data", tiny / "maps", tmp_path / "irn.pt", tmp_path / "pl")
    for image_id in TRAIN_AUG:
        labels = read_label_png(tmp_path / "pl" / f"{image_id}.png")
        assert labels.shape == masks()[image_id].shape
        assert set(np.unique(labels)) <= {0, *LABELS[image_id]}  # keys only, never 255
    assert json.loads((tmp_path / "pl" / "index.json").read_text())["count"] == 4
    other = {**params, "sipe": {**params["sipe"], "backbone": "resnet34"}}
    with pytest.raises(SipeError, match="IRN checkpoint is for backbone resnet18, but sipe.backbone is resnet34"):
        pseudo_labels(other, tiny / "data", tiny / "maps", tmp_path / "irn.pt", tmp_path / "pl2")


def test_refinement_table(tmp_path):
    def summary(name, **values):
        (tmp_path / name).write_text(json.dumps(values))
        return tmp_path / name

    cams = summary("cams.json", is_cam_mIoU=0.5, cam_mIoU=0.4, cam_best_threshold=0.2)
    crf = summary("crf.json", mIoU=0.55, coverage=1.0)
    ir = summary("ir.json", mIoU=0.55, coverage=0.8, confident_mIoU=0.6, fg_precision=0.7, bg_precision=0.9)
    pl = summary("pl.json", mIoU=0.58)
    table = refinement_table(cams, crf, ir, pl, "voc")
    assert list(table["mIoU"]) == [50.0, 55.0, 60.0, 58.0]
    assert list(table["paper_voc_mIoU"].iloc[:2]) == [58.6, 64.7] and table["paper_voc_mIoU"].iloc[2:].isna().all()
    assert table["coverage"].iloc[2] == 80.0 and table["fg_precision"].iloc[2] == 70.0
    synthetic = refinement_table(cams, crf, ir, None, "synthetic")
    assert len(synthetic) == 3 and synthetic["paper_voc_mIoU"].isna().all()
