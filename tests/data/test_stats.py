"""Dataset statistics: exact numbers on hand-made masks, consistency on a generated set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sipe.data.manifest import DatasetManifest, Split
from sipe.data.stats import dataset_statistics
from sipe.data.synthetic import generate_synthetic
from sipe.errors import DatasetError
from sipe.io import save_label_png


def _manifest(root, masks: dict[str, np.ndarray], labels: dict[str, list[int]]) -> DatasetManifest:
    (root / "SegmentationClass").mkdir()
    (root / "JPEGImages").mkdir()
    for name, mask in masks.items():
        save_label_png(root / "SegmentationClass" / f"{name}.png", mask)
    (root / "list.txt").write_text("".join(f"{n}\n" for n in masks))
    (root / "labels.json").write_text(json.dumps(labels))
    manifest = DatasetManifest(root=root, name="hand", classes=("background", "a", "b"),
                               splits={"val": Split(root / "list.txt", root / "JPEGImages", root / "SegmentationClass")},
                               labels_file=root / "labels.json")
    manifest.write()
    return DatasetManifest.load(root)


def _hand_masks():
    m1 = np.zeros((10, 10), np.uint8)
    m1[0:3, 0:3] = 1          # class a, 9 px
    m1[6:8, 6:8] = 1          # class a, two 2x2 squares touching at a corner: one 8-connected object
    m1[8:10, 8:10] = 1
    m1[9, 0] = 2              # class b, 1 px: below the 4 px minimum, not an object
    m1[5, :] = 255            # 10 px of void
    m2 = np.zeros((8, 10), np.uint8)
    m2[0:4, :] = 2            # class b, 40 px
    return {"m1": m1, "m2": m2}, {"m1": [1, 2], "m2": [2]}


@pytest.mark.parametrize("workers", [1, 2])
def test_exact_numbers_on_hand_made_masks(tmp_path, workers):
    masks, labels = _hand_masks()
    summary, per_class = dataset_statistics(_manifest(tmp_path, masks, labels), "val", workers=workers)
    assert summary["images"] == 2
    assert summary["classes"] == 2
    assert summary["fg_classes_per_image_mean"] == 1.5
    assert summary["fg_classes_per_image_max"] == 2
    assert summary["objects"] == 3
    assert summary["objects_per_image_mean"] == 1.5
    assert summary["object_area_fraction_mean"] == pytest.approx((9 / 100 + 8 / 100 + 40 / 80) / 3)
    assert summary["background_pixel_fraction"] == pytest.approx((100 - 17 - 1 - 10 + 40) / 180)
    assert summary["ignore_pixel_fraction"] == pytest.approx(10 / 180)
    assert list(per_class.index) == ["a", "b"]
    assert per_class.loc["a", "images"] == 1 and per_class.loc["b", "images"] == 2
    assert per_class.loc["a", "objects"] == 2 and per_class.loc["b", "objects"] == 1
    assert per_class.loc["a", "mean_area_fraction"] == pytest.approx((0.09 + 0.08) / 2)
    assert per_class.loc["b", "mean_area_fraction"] == pytest.approx(0.5)
    assert per_class.loc["a", "pixel_fraction"] == pytest.approx(17 / 180)
    assert per_class.loc["b", "pixel_fraction"] == pytest.approx(41 / 180)
    json.dumps(summary)  # JSON-ready


def test_out_of_range_label_is_reported(tmp_path):
    masks, labels = _hand_masks()
    masks["m2"][7, 9] = 3
    with pytest.raises(DatasetError, match=r"m2\.png: label values out of range .*3"):
        dataset_statistics(_manifest(tmp_path, masks, labels), "val")


def test_missing_mask_is_reported(tmp_path):
    masks, labels = _hand_masks()
    manifest = _manifest(tmp_path, masks, labels)
    (tmp_path / "SegmentationClass" / "m1.png").unlink()
    with pytest.raises(DatasetError, match=r"m1\.png: mask not found"):
        dataset_statistics(manifest, "val")


def test_generated_set_is_consistent(tmp_path):
    settings = {"seed": 3, "num_classes": 3, "train_aug": 10, "train": 4, "val": 3, "min_side": 64,
                "max_side": 96, "max_objects": 3, "distractors": 2, "border": 2, "jpeg_quality": 90}
    manifest = generate_synthetic(tmp_path, settings)
    summary, per_class = dataset_statistics(manifest, "train_aug")
    labels = manifest.class_labels()
    ids = manifest.ids("train_aug")
    assert summary["images"] == 10 and summary["classes"] == 3
    assert summary["fg_classes_per_image_mean"] == pytest.approx(np.mean([len(labels[i]) for i in ids]))
    assert per_class["images"].sum() == sum(len(labels[i]) for i in ids)
    assert summary["objects"] == per_class["objects"].sum() >= 10
    assert summary["ignore_pixel_fraction"] > 0
    total = summary["background_pixel_fraction"] + summary["ignore_pixel_fraction"] + per_class["pixel_fraction"].sum()
    assert total == pytest.approx(1.0)
    train, _ = dataset_statistics(manifest, "train")
    assert train["images"] == 4
