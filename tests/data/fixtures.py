"""Tiny VOC 2012, SBD and COCO 2014 trees built in a temporary folder for the dataset tests.

Every mask and label here is known exactly, so the tests can compare the prepared dataset
against hand-computed arrays.

VOC/SBD ids and their roles (the set algebra of train_aug, docs/method.md A.1)::

    VOC train  A B C          VOC val  D E          VOC test  T (image only)
    SBD train  F G E A        SBD val  H B
    train_aug = (VOC train | SBD train | SBD val) - VOC val = A B C F G H
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from pycocotools import mask as mask_utils

from sipe.io import voc_palette

A, B, C, D, E = "2007_000001", "2007_000002", "2007_000003", "2007_000004", "2007_000005"
F, G, H, T = "2008_000001", "2008_000002", "2008_000003", "2009_000001"

VOC_TRAIN = [A, B, C]
VOC_VAL = [D, E]
VOC_TEST = [T]
SBD_TRAIN = [F, G, E, A]
SBD_VAL = [H, B]
TRAIN_AUG = sorted([A, B, C, F, G, H])

# id -> (height, width, objects); an object is (name, difficult, truncated, parts).
VOC_OBJECTS = {
    A: (24, 32, [("aeroplane", 0, 0, []), ("person", 1, 0, ["head", "hand"]), ("person", 0, 1, [])]),
    B: (32, 24, [("dog", 0, 0, [])]),
    C: (24, 32, [("tvmonitor", 0, 0, []), ("bicycle", 0, 1, [])]),
    D: (32, 24, [("cat", 1, 1, []), ("sofa", 0, 0, [])]),
    E: (24, 32, [("horse", 0, 0, []), ("person", 0, 0, ["foot"])]),
    F: (32, 24, [("bus", 0, 0, []), ("car", 0, 0, []), ("person", 0, 0, [])]),
    G: (24, 32, [("bottle", 0, 0, [])]),
    H: (32, 24, [("diningtable", 0, 0, []), ("chair", 1, 0, []), ("pottedplant", 0, 0, [])]),
    T: (24, 32, []),
}

VOC_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor")


def expected_voc_labels(image_id: str) -> list[int]:
    """Sorted class indices of the objects of ``image_id`` (every object, parts not counted)."""
    return sorted({VOC_NAMES.index(name) for name, *_ in VOC_OBJECTS[image_id][2]})


def label_map(height: int, width: int, classes: list[int], border: bool, shift: int = 0) -> np.ndarray:
    """Overlapping rectangles, one per class (later ones on top), optionally with a 1-px 255 outline."""
    label = np.zeros((height, width), dtype=np.uint8)
    for k, cls in enumerate(classes):
        top, left = 2 + 3 * k + shift, 2 + 4 * k
        bottom, right = min(height - 2, top + 12), min(width - 2, left + 14)
        label[top:bottom, left:right] = cls
        if border:
            label[top - 1, left - 1:right + 1] = 255
            label[bottom, left - 1:right + 1] = 255
            label[top - 1:bottom + 1, left - 1] = 255
            label[top - 1:bottom + 1, right] = 255
    return label


def voc_mask(image_id: str) -> np.ndarray:
    """The VOC SegmentationClass mask of ``image_id`` (with 255 borders)."""
    height, width, _ = VOC_OBJECTS[image_id]
    return label_map(height, width, expected_voc_labels(image_id), border=True)


def sbd_mask(image_id: str) -> np.ndarray:
    """The SBD GTcls.Segmentation of ``image_id`` (no borders, shifted: differs from the VOC mask)."""
    height, width, _ = VOC_OBJECTS[image_id]
    return label_map(height, width, expected_voc_labels(image_id), border=False, shift=1)


def write_jpeg(path: Path, height: int, width: int, seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path, format="JPEG", quality=90)


def write_palette_png(path: Path, label: np.ndarray) -> None:
    image = Image.fromarray(label, mode="P")
    image.putpalette(voc_palette())
    image.save(path, format="PNG")


def write_voc_xml(path: Path, image_id: str, height: int, width: int, objects) -> None:
    parts = [f"<annotation>\n  <folder>VOC2012</folder>\n  <filename>{image_id}.jpg</filename>\n"
             f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
             f"  <segmented>1</segmented>\n"]
    for name, difficult, truncated, part_names in objects:
        parts.append(f"  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n"
                     f"    <truncated>{truncated}</truncated>\n    <difficult>{difficult}</difficult>\n"
                     f"    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{width}</xmax><ymax>{height}</ymax></bndbox>\n")
        for part in part_names:
            parts.append(f"    <part>\n      <name>{part}</name>\n"
                         f"      <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>\n"
                         f"    </part>\n")
        parts.append("  </object>\n")
    parts.append("</annotation>\n")
    path.write_text("".join(parts))


def write_list(path: Path, ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def make_voc_tree(root: Path, train=VOC_TRAIN, val=VOC_VAL, test=VOC_TEST, objects=VOC_OBJECTS) -> Path:
    """A VOC2012 root: JPEGs and XMLs for every id of ``objects`` (test ids get no XML), palette
    SegmentationClass PNGs for ``train`` and ``val``, and ImageSets/Segmentation lists."""
    root = Path(root)
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for seed, (image_id, (height, width, objs)) in enumerate(sorted(objects.items())):
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", height, width, seed)
        if test is None or image_id not in test:
            write_voc_xml(root / "Annotations" / f"{image_id}.xml", image_id, height, width, objs)
    for image_id in list(train) + list(val):
        write_palette_png(root / "SegmentationClass" / f"{image_id}.png", voc_mask(image_id))
    write_list(root / "ImageSets/Segmentation/train.txt", train)
    write_list(root / "ImageSets/Segmentation/val.txt", val)
    write_list(root / "ImageSets/Segmentation/trainval.txt", sorted(list(train) + list(val)))
    if test is not None:
        write_list(root / "ImageSets/Segmentation/test.txt", test)
    return root


def write_sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    """An SBD cls/ file: MATLAB v5 struct GTcls with Segmentation, Boundaries and CategoriesPresent."""
    present = np.array([c for c in np.unique(segmentation) if c not in (0, 255)], dtype=np.uint8)
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = np.zeros(segmentation.shape, dtype=np.uint8)
    scipy.io.savemat(path, {"GTcls": {"Segmentation": segmentation, "Boundaries": boundaries,
                                      "CategoriesPresent": present}})


def make_sbd_tree(root: Path, train=SBD_TRAIN, val=SBD_VAL) -> Path:
    """An SBD benchmark_RELEASE/dataset root: cls/<id>.mat for every listed id, train.txt, val.txt."""
    root = Path(root)
    (root / "cls").mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(parents=True, exist_ok=True)
    for image_id in list(train) + list(val):
        write_sbd_mat(root / "cls" / f"{image_id}.mat", sbd_mask(image_id))
    write_list(root / "train.txt", train)
    write_list(root / "val.txt", val)
    return root


# ----------------------------------------------------------------------------------------------------
# COCO 2014

COCO_CATEGORIES = [  # deliberately not in id order; contiguous ids follow the ascending category id
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]
COCO_CLASSES = ("background", "person", "car", "dog")  # 1 -> 1, 3 -> 2, 18 -> 3

TRAIN_9 = "COCO_train2014_000000000009"    # RGB 24x32: big dog rectangle, small car on top
TRAIN_25 = "COCO_train2014_000000000025"   # grayscale 20x30: crowd person (uncompressed RLE) + car polygon
TRAIN_30 = "COCO_train2014_000000000030"   # no annotation: not listed
VAL_42 = "COCO_val2014_000000000042"       # RGB 16x20: person as compressed RLE
VAL_73 = "COCO_val2014_000000000073"       # no annotation: not listed


def rect_polygon(x0, y0, x1, y1) -> list[float]:
    """A polygon whose rasterisation is exactly rows y0..y1-1, columns x0..x1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def uncompressed_rle(region: np.ndarray) -> dict:
    """COCO uncompressed RLE of a boolean H x W region (column-major runs, starting with zeros)."""
    flat = region.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(region.shape), "counts": counts}


def crowd_region() -> np.ndarray:
    region = np.zeros((20, 30), dtype=bool)
    region[10:16, 3:12] = True
    region[12, 20:25] = True
    return region


def val_region() -> np.ndarray:
    region = np.zeros((16, 20), dtype=bool)
    region[4:9, 2:15] = True
    return region


def expected_coco_masks(crowd: str = "class") -> dict[str, np.ndarray]:
    """Hand-computed semantic masks of the annotated fixture images."""
    m9 = np.zeros((24, 32), np.uint8)
    m9[2:18, 2:20] = 3          # dog (category 18), area 288, painted first
    m9[5:9, 4:10] = 2           # car (category 3), area 24, on top
    m25 = np.zeros((20, 30), np.uint8)
    m25[crowd_region()] = 1 if crowd == "class" else 255   # crowd person, area 59, painted first
    m25[11:14, 8:14] = 2        # car polygon, area 18, on top of the crowd region
    m42 = np.zeros((16, 20), np.uint8)
    m42[val_region()] = 1
    return {TRAIN_9: m9, TRAIN_25: m25, VAL_42: m42}


def make_coco_tree(root: Path) -> Path:
    """A COCO 2014 root: train2014/, val2014/ and annotations/instances_{train,val}2014.json."""
    root = Path(root)
    for sub in ("train2014", "val2014", "annotations"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_jpeg(root / "train2014" / f"{TRAIN_9}.jpg", 24, 32, 1)
    write_jpeg(root / "train2014" / f"{TRAIN_25}.jpg", 20, 30, 2, mode="L")
    write_jpeg(root / "train2014" / f"{TRAIN_30}.jpg", 24, 24, 3)
    write_jpeg(root / "val2014" / f"{VAL_42}.jpg", 16, 20, 4)
    write_jpeg(root / "val2014" / f"{VAL_73}.jpg", 16, 16, 5)

    train = {
        "info": {"description": "tiny COCO 2014 fixture"},
        "images": [
            {"id": 9, "file_name": f"{TRAIN_9}.jpg", "height": 24, "width": 32},
            {"id": 25, "file_name": f"{TRAIN_25}.jpg", "height": 20, "width": 30},
            {"id": 30, "file_name": f"{TRAIN_30}.jpg", "height": 24, "width": 24},
        ],
        "annotations": [
            # the small car is listed first: painting follows decreasing area, not JSON order
            {"id": 101, "image_id": 9, "category_id": 3, "segmentation": [rect_polygon(4, 5, 10, 9)],
             "area": 24.0, "bbox": [4, 5, 6, 4], "iscrowd": 0},
            {"id": 102, "image_id": 9, "category_id": 18, "segmentation": [rect_polygon(2, 2, 20, 18)],
             "area": 288.0, "bbox": [2, 2, 18, 16], "iscrowd": 0},
            {"id": 103, "image_id": 25, "category_id": 3, "segmentation": [rect_polygon(8, 11, 14, 14)],
             "area": 18.0, "bbox": [8, 11, 6, 3], "iscrowd": 0},
            {"id": 104, "image_id": 25, "category_id": 1, "segmentation": uncompressed_rle(crowd_region()),
             "area": float(crowd_region().sum()), "bbox": [3, 10, 22, 6], "iscrowd": 1},
        ],
        "categories": COCO_CATEGORIES,
    }
    rle = mask_utils.encode(np.asfortranarray(val_region().astype(np.uint8)))
    val = {
        "images": [
            {"id": 42, "file_name": f"{VAL_42}.jpg", "height": 16, "width": 20},
            {"id": 73, "file_name": f"{VAL_73}.jpg", "height": 16, "width": 16},
        ],
        "annotations": [
            {"id": 201, "image_id": 42, "category_id": 1,
             "segmentation": {"size": [16, 20], "counts": rle["counts"].decode("ascii")},
             "area": float(val_region().sum()), "bbox": [2, 4, 13, 5], "iscrowd": 0},
        ],
        "categories": COCO_CATEGORIES,
    }
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(train))
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(val))
    return root
