"""A tiny hand-made dataset (4 classes, 3 train images) whose masks are known pixel by pixel.

Pixel counts of the ``train`` split (used for hand-computed IoUs in the tests)::

    id     size    class pixels                         ignore  background
    img0   12x16   class 1: 16 (rows 2:6, cols 3:7)      4       152
                   class 2: 20 (rows 7:11, cols 10:15)
    img1   10x14   class 3: 20 (rows 1:5, cols 1:6)      0       120
    img2   16x12   class 1: 24 (rows 4:10, cols 2:6)     0       156
                   class 3: 12 (rows 11:14, cols 6:10)
    total                                                4       428   (520 scored pixels)

``train_aug`` holds the three train images plus ``img3``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sipe.data.manifest import DatasetManifest, Split
from sipe.io import save_label_png

CLASSES = ("background", "a", "b", "c")
TRAIN = ["img0", "img1", "img2"]
TRAIN_AUG = TRAIN + ["img3"]
N_BG, N_VALID = 428, 520


def masks() -> dict[str, np.ndarray]:
    m0 = np.zeros((12, 16), np.uint8)
    m0[2:6, 3:7] = 1
    m0[7:11, 10:15] = 2
    m0[8, 0:4] = 255
    m1 = np.zeros((10, 14), np.uint8)
    m1[1:5, 1:6] = 3
    m2 = np.zeros((16, 12), np.uint8)
    m2[4:10, 2:6] = 1
    m2[11:14, 6:10] = 3
    m3 = np.zeros((14, 14), np.uint8)
    m3[3:9, 3:9] = 2
    return {"img0": m0, "img1": m1, "img2": m2, "img3": m3}


LABELS = {"img0": [1, 2], "img1": [3], "img2": [1, 3], "img3": [2]}


def make_dataset(root: Path) -> DatasetManifest:
    """Write the tiny dataset (images, masks, id lists, labels, dataset.json) into ``root``."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "lists").mkdir()
    for image_id, mask in masks().items():
        image = rng.integers(0, 256, size=(*mask.shape, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.png")
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
    (root / "lists" / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "lists" / "train_aug.txt").write_text("\n".join(TRAIN_AUG) + "\n")
    (root / "cls_labels.json").write_text(json.dumps(LABELS))
    split = {name: Split(root / "lists" / f"{name}.txt", root / "JPEGImages", root / "SegmentationClass")
             for name in ("train", "train_aug")}
    manifest = DatasetManifest(root=root, name="tiny", classes=CLASSES, splits=split,
                               labels_file=root / "cls_labels.json", image_ext=".png", mask_ext=".png")
    manifest.write()
    return DatasetManifest.load(root)


def perfect_maps(mask: np.ndarray, present: list[int], fg: float = 0.42, rest: float = 0.38):
    """keys, cam, is_cam that reproduce ``mask``: IS-CAM one-hot of the GT (ignore → background);
    CAM row k = ``fg`` on class k and ``rest`` elsewhere, so only thresholds in [rest, fg) are perfect."""
    keys = np.asarray([0, *present], np.int64)
    target = np.where(mask == 255, 0, mask)
    is_cam = np.stack([(target == k).astype(np.float32) for k in keys])
    cam = np.stack([np.where(target == k, fg, rest).astype(np.float32) for k in keys[1:]])
    return keys, cam, is_cam
