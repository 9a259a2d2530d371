"""validate_dataset: every image, mask and class label of a prepared dataset (docs/architecture.md, Reliability rules)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sipe.data.manifest import DatasetManifest, Split
from sipe.data.validate import bad_label_values, validate_dataset
from sipe.errors import DatasetError
from sipe.io import save_label_png
from sipe.parallel import parallel_map
from tests.data.fixtures import write_jpeg

CLASSES = ("background", "cat", "dog")
SIZES = {"img_a": (24, 32), "img_b": (32, 24), "img_c": (24, 32), "img_d": (20, 20), "img_e": (16, 16)}
LISTS = {"train_aug": ["img_a", "img_b", "img_c"], "train": ["img_a", "img_b"], "val": ["img_d"], "test": ["img_e"]}


def make_dataset(root: Path) -> DatasetManifest:
    """A 3-class dataset: train_aug/train/val with masks, test without, labels for all but test."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassAug").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for seed, (image_id, (h, w)) in enumerate(SIZES.items()):
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", h, w, seed)
        mask = np.zeros((h, w), np.uint8)
        mask[2:8, 2:8] = 1 + seed % 2
        mask[8, 2:8] = 255
        if image_id != "img_e":
            save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", mask)
    for role, ids in LISTS.items():
        (root / "ImageSets" / "Segmentation" / f"{role}.txt").write_text("".join(f"{i}\n" for i in ids))
    labels = {i: [1 + seed % 2] for seed, i in enumerate(SIZES) if i != "img_e"}
    (root / "cls_labels.json").write_text(json.dumps(labels))
    lists = root / "ImageSets" / "Segmentation"
    splits = {role: Split(lists / f"{role}.txt", root / "JPEGImages",
                          None if role == "test" else root / "SegmentationClassAug") for role in LISTS}
    manifest = DatasetManifest(root=root, name="tiny", classes=CLASSES, splits=splits,
                               labels_file=root / "cls_labels.json")
    manifest.write()
    return manifest


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "tiny")


def png(manifest, image_id):
    return manifest.root / "SegmentationClassAug" / f"{image_id}.png"


def jpg(manifest, image_id):
    return manifest.root / "JPEGImages" / f"{image_id}.jpg"


@pytest.mark.parametrize("workers", [1, 2])
def test_validate_accepts_a_good_dataset(dataset, workers):
    validate_dataset(dataset, workers=workers)
    validate_dataset(DatasetManifest.load(dataset.root), workers=workers)


def test_validate_accepts_grayscale_masks_and_images(dataset):
    Image.fromarray(np.zeros((24, 32), np.uint8), mode="L").save(png(dataset, "img_a"))
    write_jpeg(jpg(dataset, "img_a"), 24, 32, 9, mode="L")
    validate_dataset(dataset)


def test_validate_exact_message_for_values_out_of_range(dataset):
    mask = np.zeros((32, 24), np.uint8)
    mask[0, 0], mask[1, 1], mask[2, 2] = 3, 37, 254
    save_label_png(png(dataset, "img_b"), mask)
    with pytest.raises(DatasetError) as info:
        validate_dataset(dataset)
    assert str(info.value) == (f"{dataset.root / 'SegmentationClassAug'}: mask values out of range 0..2/255 "
                               f"(split 'train_aug'): img_b.png (values 3, 37, 254)")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _value(path: Path, value: int) -> None:
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0] = value
    save_label_png(path, mask)


BROKEN = {
    "missing image": (lambda m: jpg(m, "img_c").unlink(), ["JPEGImages: 1 image(s) of split 'train_aug' not found",
                                                           "img_c.jpg"]),
    "garbage image": (lambda m: jpg(m, "img_d").write_bytes(b"\x89PNG garbage"),
                      ["JPEGImages: 1 unreadable image(s) in split 'val': img_d.jpg ("]),
    "truncated image": (lambda m: _truncate(jpg(m, "img_a")), ["JPEGImages", "img_a.jpg (image file is truncated"]),
    "empty image file": (lambda m: jpg(m, "img_e").write_bytes(b""), ["split 'test'", "img_e.jpg"]),
    "missing mask": (lambda m: png(m, "img_d").unlink(), ["SegmentationClassAug: 1 mask(s) of split 'val' not found: "
                                                          "img_d.png"]),
    "garbage mask": (lambda m: png(m, "img_a").write_bytes(b"garbage"), ["unreadable mask", "img_a.png"]),
    "truncated mask": (lambda m: _truncate(png(m, "img_a")), ["unreadable mask", "img_a.png"]),
    "rgb mask": (lambda m: Image.new("RGB", (32, 24)).save(png(m, "img_c")),
                 ["palette (P) or grayscale (L)", "img_c.png (mode RGB)"]),
    "16-bit mask": (lambda m: Image.fromarray(np.zeros((24, 32), np.uint16)).save(png(m, "img_c")),
                    ["palette (P) or grayscale (L)", "img_c.png (mode I;16"]),
    "value out of range": (lambda m: _value(png(m, "img_d"), 21),
                           ["mask values out of range 0..2/255 (split 'val'): img_d.png (value 21)"]),
    "size mismatch": (lambda m: save_label_png(png(m, "img_b"), np.zeros((24, 32), np.uint8)),
                      ["mask size differs from its image size (split 'train_aug'): img_b.png (mask 32x24, "
                       "image 24x32)"]),
    "missing labels": (lambda m: (m.root / "cls_labels.json").write_text(json.dumps({"img_a": [1]})),
                       ["cls_labels.json: no class labels for 2 id(s) of split 'train_aug': img_b, img_c"]),
    "bad label value": (lambda m: (m.root / "cls_labels.json").write_text(json.dumps({"img_a": [3]})),
                        ["cls_labels.json", "class indices 1..2", "img_a"]),
    "empty id list": (lambda m: (m.root / "ImageSets/Segmentation/val.txt").write_text(""),
                      ["val.txt: id list is empty"]),
    "duplicate ids": (lambda m: (m.root / "ImageSets/Segmentation/train.txt").write_text("img_a\nimg_b\nimg_a\n"),
                      ["train.txt: duplicate ids: img_a"]),
    "id with slash": (lambda m: (m.root / "ImageSets/Segmentation/train.txt").write_text("img_a\nx/img_b\n"),
                      ["train.txt: invalid ids", "'x/img_b'"]),
    "id with dotdot": (lambda m: (m.root / "ImageSets/Segmentation/train.txt").write_text("..\n"),
                       ["train.txt: invalid ids", "'..'"]),
    "absolute id": (lambda m: (m.root / "ImageSets/Segmentation/test.txt").write_text("/tmp/img_e\n"),
                    ["test.txt: invalid ids", "'/tmp/img_e'"]),
    "missing id list": (lambda m: (m.root / "ImageSets/Segmentation/train_aug.txt").unlink(),
                        ["train_aug.txt: id list not found"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validate_broken_dataset_is_one_line_error(dataset, case):
    breaker, expected = BROKEN[case]
    breaker(dataset)
    with pytest.raises(DatasetError) as info:
        validate_dataset(dataset, workers=2 if case in ("truncated image", "size mismatch") else 1)
    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, message


def test_validate_reports_the_first_kind_and_first_offenders(dataset, tmp_path):
    # Several problems at once: missing images are reported before bad mask values.
    _value(png(dataset, "img_a"), 9)
    jpg(dataset, "img_c").unlink()
    with pytest.raises(DatasetError, match=r"image\(s\) of split 'train_aug' not found: img_c\.jpg$"):
        validate_dataset(dataset)
    # Many offenders are cut after five.
    ids = [f"x{k:02d}" for k in range(8)]
    (dataset.root / "ImageSets/Segmentation/train_aug.txt").write_text("".join(f"{i}\n" for i in ids))
    with pytest.raises(DatasetError) as info:
        validate_dataset(dataset, roles=["train_aug"])
    assert str(info.value).endswith(": 8 image(s) of split 'train_aug' not found: "
                                    "x00.jpg, x01.jpg, x02.jpg, x03.jpg, x04.jpg (and 3 more)")


def test_validate_checks_only_the_given_roles(dataset):
    png(dataset, "img_d").unlink()                 # val is broken
    validate_dataset(dataset, roles=["train_aug", "train", "test"])
    with pytest.raises(DatasetError, match="split 'val'"):
        validate_dataset(dataset, roles=["val"])
    with pytest.raises(DatasetError, match="no split 'nope'"):
        validate_dataset(dataset, roles=["nope"])


def test_validate_missing_image_folder(dataset):
    (dataset.root / "JPEGImages").rename(dataset.root / "Elsewhere")
    with pytest.raises(DatasetError, match=r"JPEGImages: image folder of split 'train_aug' not found"):
        validate_dataset(dataset)


def test_bad_label_values():
    mask = np.array([[0, 1, 2, 255], [3, 200, 254, 0]], np.uint8)
    assert bad_label_values(mask, 3) == [3, 200, 254]
    assert bad_label_values(mask, 255) == []


def _square(x):
    return x * x


def test_parallel_map_keeps_order():
    assert parallel_map(_square, range(50), workers=3) == [x * x for x in range(50)]
    assert parallel_map(_square, [], workers=3) == []
    assert parallel_map(_square, [4], workers=1) == [16]
