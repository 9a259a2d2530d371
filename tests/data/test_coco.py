"""prepare_coco: COCO 2014 instances -> prepared dataset with semantic masks (docs/method.md A.3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sipe.data.coco import prepare_coco, rasterise, segmentation_to_mask
from sipe.data.manifest import DatasetManifest
from sipe.errors import ConfigError, DatasetError
from sipe.io import read_label_png
from tests.data.fixtures import (COCO_CLASSES, TRAIN_9, TRAIN_25, TRAIN_30, VAL_42, VAL_73, crowd_region,
                                 expected_coco_masks, make_coco_tree, rect_polygon, uncompressed_rle)


@pytest.fixture
def coco(tmp_path):
    root = make_coco_tree(tmp_path / "coco2014")
    out = tmp_path / "data" / "coco"
    out.mkdir(parents=True)
    return root, out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    root = make_coco_tree(tmp / "coco2014")
    out = tmp / "out"
    out.mkdir()
    return root, out, prepare_coco(root, out)


def read_list(path: Path) -> list[str]:
    return path.read_text().split()


def mask_of(out: Path, name: str) -> np.ndarray:
    subset = "train2014" if "train2014" in name else "val2014"
    return read_label_png(out / "SegmentationClass" / subset / f"{name}.png")


def test_coco_lists_hold_annotated_images_only(prepared):
    _, out, manifest = prepared
    lists = out / "ImageSets" / "Segmentation"
    assert read_list(lists / "train_aug.txt") == [TRAIN_9, TRAIN_25]
    assert read_list(lists / "train.txt") == [TRAIN_9, TRAIN_25]
    assert read_list(lists / "val.txt") == [VAL_42]
    assert TRAIN_30 not in manifest.ids("train_aug") and VAL_73 not in manifest.ids("val")
    assert sorted(p.name for p in (out / "SegmentationClass" / "train2014").iterdir()) == [
        f"{TRAIN_9}.png", f"{TRAIN_25}.png"]


def test_coco_contiguous_class_ids_in_ascending_category_id_order(prepared):
    _, out, manifest = prepared
    assert manifest.classes == COCO_CLASSES            # ids 1, 3, 18 -> 1, 2, 3
    assert (out / "classes.txt").read_text().splitlines() == list(COCO_CLASSES)
    assert manifest.class_labels() == {TRAIN_9: (2, 3), TRAIN_25: (1, 2), VAL_42: (1,)}


def test_coco_masks_match_hand_rasterisation(prepared):
    _, out, _ = prepared
    for name, expected in expected_coco_masks("class").items():
        np.testing.assert_array_equal(mask_of(out, name), expected, err_msg=name)


def test_coco_small_objects_stay_on_top(prepared):
    _, out, _ = prepared
    mask = mask_of(out, TRAIN_9)
    assert (mask[5:9, 4:10] == 2).all()        # car (area 24) listed first in the JSON, painted last
    assert (mask[2:18, 2:20] != 0).all() and (mask == 3).sum() == 16 * 18 - 4 * 6


def test_coco_crowd_ignore_writes_255(coco):
    root, out = coco
    prepare_coco(root, out, crowd="ignore")
    for name, expected in expected_coco_masks("ignore").items():
        np.testing.assert_array_equal(mask_of(out, name), expected, err_msg=name)
    mask = mask_of(out, TRAIN_25)
    assert (mask == 255).sum() == crowd_region().sum() - 3 * 4   # the car (rows 11-13, cols 8-11) is on top
    assert json.loads((out / "cls_labels.json").read_text())[TRAIN_25] == [1, 2]


def test_coco_grayscale_image_is_accepted(prepared):
    root, _, manifest = prepared
    with Image.open(root / "train2014" / f"{TRAIN_25}.jpg") as image:
        assert image.mode == "L"
    assert TRAIN_25 in manifest.ids("train")


def test_coco_manifest_points_at_the_coco_images(prepared):
    root, out, _ = prepared
    loaded = DatasetManifest.load(out / "dataset.json")
    assert loaded.name == "coco"
    assert loaded.split("train_aug").image_dir.resolve() == (root / "train2014").resolve()
    assert loaded.split("train").image_dir.resolve() == (root / "train2014").resolve()
    assert loaded.split("val").image_dir.resolve() == (root / "val2014").resolve()
    assert loaded.split("val").mask_dir.resolve() == (out / "SegmentationClass" / "val2014").resolve()
    assert loaded.image_path("val", VAL_42).is_file() and loaded.mask_path("val", VAL_42).is_file()


def test_coco_parallel_workers_give_identical_files(prepared):
    root, out, _ = prepared
    out2 = out.parent / "out_workers2"
    out2.mkdir()
    prepare_coco(root, out2, workers=2)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(out2)) for p in out2.rglob("*") if p.is_file())
    for name in files:
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_segmentation_decoding_forms():
    block = np.zeros((6, 8), np.uint8)
    block[1:3, 1:5] = 1
    np.testing.assert_array_equal(segmentation_to_mask([rect_polygon(1, 1, 5, 3)], 6, 8), block)
    np.testing.assert_array_equal(segmentation_to_mask(uncompressed_rle(block.astype(bool)), 6, 8), block)
    assert segmentation_to_mask([[1, 1, 4, 4]], 6, 8) is None           # two points enclose nothing
    labels = rasterise(6, 8, [(7, [rect_polygon(0, 0, 8, 6)]), (2, [rect_polygon(1, 1, 5, 3)])])
    assert labels.flags["C_CONTIGUOUS"] and (labels == np.where(block, 2, 7)).all()
    with pytest.raises(ValueError, match="odd"):
        segmentation_to_mask([[1, 1, 4, 4, 5]], 6, 8)
    with pytest.raises(ValueError, match="size"):
        segmentation_to_mask({"size": [5, 8], "counts": [40]}, 6, 8)


# --- broken inputs ---------------------------------------------------------------------------------------


def edit_json(root: Path, subset: str, change) -> None:
    path = root / "annotations" / f"instances_{subset}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BROKEN = {
    "missing annotation key": (lambda r: edit_json(r, "train2014", lambda d: d["annotations"][1].pop("area")),
                               ["instances_train2014.json", "annotation 102", "'area'"]),
    "missing image key": (lambda r: edit_json(r, "val2014", lambda d: d["images"][0].pop("width")),
                          ["instances_val2014.json", "images[0] id 42 (missing 'width')"]),
    "missing top-level key": (lambda r: edit_json(r, "val2014", lambda d: d.pop("categories")),
                              ["instances_val2014.json", "categories"]),
    "unknown category": (lambda r: edit_json(r, "train2014", lambda d: d["annotations"][2].update(category_id=91)),
                         ["instances_train2014.json", "annotation 103 (category 91)"]),
    "annotation without image": (lambda r: edit_json(r, "val2014",
                                                     lambda d: d["annotations"][0].update(image_id=999)),
                                 ["instances_val2014.json", "annotation 201 (image_id 999)"]),
    "image size differs": (lambda r: edit_json(r, "train2014", lambda d: d["images"][0].update(height=25)),
                           ["instances_train2014.json", f"{TRAIN_9}.jpg (JSON 32x25, file 32x24)"]),
    "categories differ": (lambda r: edit_json(r, "val2014", lambda d: d["categories"].pop()),
                          ["instances_val2014.json", "categories differ"]),
    "missing image": (lambda r: (r / "val2014" / f"{VAL_42}.jpg").unlink(), [f"{VAL_42}.jpg", "val2014"]),
    "garbage image": (lambda r: (r / "train2014" / f"{TRAIN_25}.jpg").write_bytes(b"garbage" * 10),
                      [f"{TRAIN_25}.jpg", "unreadable"]),
    "truncated image": (lambda r: _truncate(r / "train2014" / f"{TRAIN_9}.jpg"), [f"{TRAIN_9}.jpg", "truncated"]),
    "odd polygon": (lambda r: edit_json(r, "train2014",
                                        lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5, 6, 7]])),
                    ["instances_train2014.json", "annotation 101", "odd"]),
    "not json": (lambda r: (r / "annotations" / "instances_val2014.json").write_text("{"),
                 ["instances_val2014.json", "JSON"]),
    "missing annotation file": (lambda r: (r / "annotations" / "instances_train2014.json").unlink(),
                                ["instances_train2014.json", "coco.root"]),
    "missing image folder": (lambda r: shutil.rmtree(r / "val2014"), ["val2014", "not found"]),
    "bad file name": (lambda r: edit_json(r, "val2014", lambda d: d["images"][0].update(file_name="../x.jpg")),
                      ["instances_val2014.json", "'../x.jpg'"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_coco_broken_input_is_one_line_error_naming_the_file(coco, case):
    root, out = coco
    breaker, expected = BROKEN[case]
    breaker(root)
    with pytest.raises(DatasetError) as info:
        prepare_coco(root, out, workers=2 if case == "image size differs" else 1)
    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, message
    assert not (out / "dataset.json").exists()


def test_coco_missing_root(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DatasetError, match=r"nowhere: COCO 2014 root not found .*coco\.root"):
        prepare_coco(tmp_path / "nowhere", out)


def test_coco_unknown_crowd_mode(coco):
    root, out = coco
    with pytest.raises(ConfigError, match="coco.crowd"):
        prepare_coco(root, out, crowd="drop")
