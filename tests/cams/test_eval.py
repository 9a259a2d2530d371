"""eval_cams and cam_overlays on the tiny dataset with hand-written maps (tiny.py gives the pixel counts)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sipe.maps import map_path, save_maps
from sipe.errors import SipeError
from sipe.stages.cams import cam_overlays, eval_cams

from .tiny import LABELS, N_BG, N_VALID, TRAIN, make_dataset, masks, perfect_maps

THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 13)]  # 0.05, 0.10, ..., 0.60
PARAMS = {"eval_cams": {"bg_thresholds": THRESHOLDS}, "cams": {"scales": [1.0], "shards": 1, "overlay_samples": 2}}


@pytest.fixture()
def dataset(tmp_path):
    make_dataset(tmp_path / "data")
    return tmp_path / "data"


def write_perfect(maps_dir, ids=TRAIN, corrupt=None):
    for image_id in ids:
        keys, cam, is_cam = perfect_maps(masks()[image_id], LABELS[image_id])
        if corrupt:
            corrupt(image_id, keys, cam, is_cam)
        save_maps(map_path(maps_dir, image_id), keys, cam, is_cam)


def read(out, name):
    return json.loads((out / name).read_text())


def test_perfect_maps_and_threshold_sweep(dataset, tmp_path):
    maps, out = tmp_path / "maps", tmp_path / "eval"
    write_perfect(maps)
    summary = eval_cams(PARAMS, dataset, maps, out)

    assert read(out, "is_cam.json")["mIoU"] == 1.0
    assert read(out, "is_cam.json")["num_images"] == 3
    assert read(out, "is_cam.json")["num_pixels"] == N_VALID  # the 4 ignore pixels never count
    per_class = pd.read_csv(out / "is_cam_per_class.csv")
    assert per_class["iou"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert per_class["name"].tolist() == ["background", "a", "b", "c"]

    # CAM rows are 0.42 on their class and 0.38 elsewhere (float16): only t = 0.40 separates them
    sweep = pd.read_csv(out / "cam_threshold_sweep.csv")
    assert sweep.columns.tolist() == ["threshold", "mIoU"]
    assert sweep["threshold"].tolist() == THRESHOLDS
    by_t = dict(zip(sweep["threshold"], sweep["mIoU"]))
    # t <= 0.35: every background pixel goes to the image's first present class
    #   bg IoU 0; class a: TP 40, pred 40 + 152 (img0) + 156 (img2); class b: 1; class c: TP 32, pred 32 + 120 (img1)
    low = (0 + 40 / 348 + 1 + 32 / 152) / 4
    # t >= 0.45: everything is background: bg IoU 428/520, foreground 0
    high = (N_BG / N_VALID) / 4
    for t in THRESHOLDS:
        expected = low if t <= 0.35 else (1.0 if t == 0.40 else high)
        assert by_t[t] == pytest.approx(expected, abs=1e-12), t
    assert summary == {"cam_mIoU": 1.0, "cam_best_threshold": 0.40, "is_cam_mIoU": 1.0}
    assert read(out, "summary.json") == summary
    assert read(out, "cam.json")["mIoU"] == 1.0
    assert pd.read_csv(out / "cam_per_class.csv")["iou"].tolist() == [1.0, 1.0, 1.0, 1.0]
    with Image.open(out / "cam_threshold_sweep.png") as png:
        assert png.format == "PNG" and png.width > 100


def test_known_corruption(dataset, tmp_path):
    def corrupt(image_id, keys, cam, is_cam):
        if image_id == "img0":
            # 4 pixels of class a (row 2, cols 3:7) go to the background ...
            is_cam[:, 2, 3:7] = 0
            is_cam[0, 2, 3:7] = 1
            # ... and the 4 ignore pixels (row 8, cols 0:4) go to class b: they must not count
            is_cam[:, 8, 0:4] = 0
            is_cam[2, 8, 0:4] = 1
            # the CAM of class a loses the same 4 pixels (0.38 < 0.40)
            cam[0, 2, 3:7] = 0.38

    maps, out = tmp_path / "maps", tmp_path / "eval"
    write_perfect(maps, corrupt=corrupt)
    summary = eval_cams(PARAMS, dataset, maps, out)
    # background: TP 428, GT 428, pred 432; class a: TP 36, GT 40, pred 36; b, c perfect
    expected = (428 / 432 + 36 / 40 + 1 + 1) / 4
    assert summary["is_cam_mIoU"] == pytest.approx(expected, abs=1e-12)
    assert summary["cam_mIoU"] == pytest.approx(expected, abs=1e-12)
    assert summary["cam_best_threshold"] == 0.40
    per_class = pd.read_csv(out / "is_cam_per_class.csv")
    assert per_class["iou"].tolist() == pytest.approx([428 / 432, 0.9, 1.0, 1.0])
    assert per_class["fn"].tolist() == pytest.approx([0.0, 0.1, 0.0, 0.0])


def test_missing_map_is_one_line_error(dataset, tmp_path):
    maps = tmp_path / "maps"
    write_perfect(maps, ids=["img0", "img2"])
    with pytest.raises(SipeError) as info:
        eval_cams(PARAMS, dataset, maps, tmp_path / "eval")
    message = str(info.value)
    assert "img1" in message and str(maps) in message and "\n" not in message
    assert not (tmp_path / "eval").exists()


def test_size_mismatch_is_one_line_error(dataset, tmp_path):
    maps = tmp_path / "maps"
    write_perfect(maps)
    save_maps(map_path(maps, "img1"), [0, 3], np.zeros((1, 10, 13)), np.zeros((2, 10, 13)))
    with pytest.raises(SipeError, match=r"img1.npz: map size \(10, 13\) != GT size \(10, 14\)") as info:
        eval_cams(PARAMS, dataset, maps, tmp_path / "eval")
    assert "\n" not in str(info.value)


def test_eval_reads_shard_folders(dataset, tmp_path):
    write_perfect(tmp_path / "s0", ids=["img0", "img2"])
    write_perfect(tmp_path / "s1", ids=["img1"])
    summary = eval_cams(PARAMS, dataset, [tmp_path / "s0", tmp_path / "s1"], tmp_path / "eval")
    assert summary["is_cam_mIoU"] == 1.0


def test_cam_overlays_sheet(dataset, tmp_path):
    maps = tmp_path / "maps"
    write_perfect(maps)
    out = tmp_path / "overlays.png"
    cam_overlays(PARAMS, dataset, maps, out)
    with Image.open(out) as sheet:
        # the colour bar on top (label line, bar, tick labels: 4 + 18 + 14 + 2 + 18 + 4 = 60 px), then per sample
        # a 22 px heading + CAM row + IS-CAM row (128 px tiles + one 20 px caption line + 4 px padding) + 4 px
        assert sheet.format == "PNG"
        assert sheet.height == 60 + 2 * (22 + 2 * 152 + 4) + 4
        # img0 (12x16) has background + 2 classes: image + 3 maps, tiles 171 px wide
        assert sheet.width == 4 * (171 + 4) + 4
        image = np.asarray(sheet.convert("RGB"))
    assert image.std() > 10  # not a blank sheet


def test_cam_overlays_missing_map(dataset, tmp_path):
    maps = tmp_path / "maps"
    write_perfect(maps, ids=["img0"])
    with pytest.raises(SipeError, match="img1"):
        cam_overlays(PARAMS, dataset, maps, tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()
