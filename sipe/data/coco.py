"""MS COCO 2014 preparation (docs/method.md A.3).

:func:`prepare_coco` turns a COCO 2014 root (``train2014/``, ``val2014/``,
``annotations/instances_{train,val}2014.json``) into a prepared dataset (``dataset.json``, see
:mod:`sipe.data.manifest`) in an empty output folder::

    SegmentationClass/train2014/<name>.png  semantic masks: 0 background, 1..80 the categories in
    SegmentationClass/val2014/<name>.png    ascending COCO category id (1 person ... 80 toothbrush)
    ImageSets/Segmentation/train_aug.txt    train2014 images with at least one annotation (sorted)
    ImageSets/Segmentation/train.txt        the same ids
    ImageSets/Segmentation/val.txt          val2014 images with at least one annotation
    cls_labels.json                         name -> sorted contiguous class ids of its annotations
    classes.txt                             one class name per line, line i = class i (0 = background)
    dataset.json                            written last, after validation

Masks paint the annotations of an image in order of decreasing area, so smaller objects stay on
top; crowd regions get their class (``crowd="class"``) or 255 (``crowd="ignore"``). Images are not
copied: the manifest points at ``<root>/train2014`` and ``<root>/val2014``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sipe.data.manifest import DatasetManifest, Split, bad_id_reason
from sipe.data.validate import IMAGE_UNREADABLE, problem_message, short_reason, validate_dataset
from sipe.errors import ConfigError, DatasetError, first_offenders
from sipe.io import IGNORE_INDEX, save_label_png, write_json, write_text
from sipe.parallel import parallel_map

COCO_HINT = ("download train2014.zip, val2014.zip and annotations_trainval2014.zip from cocodataset.org, "
             "extract them into one folder and set coco.root to it")
CROWD_MODES = ("class", "ignore")
SUBSETS = {"train": "train2014", "val": "val2014"}
LIST_DIR = Path("ImageSets") / "Segmentation"
MASK_DIR = "SegmentationClass"
LABELS_FILE = "cls_labels.json"
CLASSES_FILE = "classes.txt"

IMAGE_MISSING = "image_missing"
IMAGE_SIZE = "image_size"
BAD_SEGMENTATION = "bad_segmentation"
CONVERT_ORDER = (IMAGE_MISSING, IMAGE_UNREADABLE, IMAGE_SIZE, BAD_SEGMENTATION)
CONVERT_MESSAGES = {
    IMAGE_MISSING: "{image_dir}: {n} annotated image(s) listed in {json_path} not found: {files}",
    IMAGE_UNREADABLE: "{image_dir}: {n} unreadable image(s): {files}",
    IMAGE_SIZE: "{json_path}: image size in the JSON differs from the file in {image_dir} for {n} image(s): {files}",
    BAD_SEGMENTATION: "{json_path}: {n} image(s) with an invalid segmentation: {files}",
}
SPLIT_SOURCES = {"train_aug": "train", "train": "train", "val": "val"}  # split -> role in SUBSETS

IMAGE_KEYS = ("id", "file_name", "height", "width")
ANNOTATION_KEYS = ("image_id", "category_id", "segmentation", "area", "iscrowd")
CATEGORY_KEYS = ("id", "name")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _missing_keys(entries, keys, label, kind: str) -> list[str]:
    """Offender strings for entries that are not objects or lack one of ``keys``."""
    offenders = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            offenders.append(f"{kind}[{index}] (not an object)")
            continue
        absent = [k for k in keys if k not in entry]
        if absent:
            offenders.append(f"{label(index, entry)} (missing {', '.join(repr(k) for k in absent)})")
    return offenders


def _image_label(index: int, entry: dict) -> str:
    return f"images[{index}]" + (f" id {entry['id']}" if "id" in entry else "")


def _annotation_label(index: int, entry: dict) -> str:
    return f"annotation {entry['id']}" if "id" in entry else f"annotations[{index}]"


def _category_label(index: int, entry: dict) -> str:
    return f"categories[{index}]"


def _read_instances(path: Path) -> dict:
    """Read an ``instances_*.json`` file and check its top level (lists of images, annotations, categories)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found ({COCO_HINT})") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON file ({short_reason(exc)})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be an object with images, annotations and categories")
    absent = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if absent:
        raise DatasetError(f"{path}: missing or non-list top-level key(s): {', '.join(absent)}")
    return data


def _check_keys(path: Path, data: dict) -> None:
    """Every category, image and annotation is an object with its required keys."""
    for kind, keys, label in (("categories", CATEGORY_KEYS, _category_label), ("images", IMAGE_KEYS, _image_label),
                              ("annotations", ANNOTATION_KEYS, _annotation_label)):
        offenders = _missing_keys(data[kind], keys, label, kind)
        if offenders:
            raise DatasetError(f"{path}: {kind} with missing keys: {first_offenders(offenders)}")


def _check_categories(path: Path, categories: list[dict]) -> None:
    """Integer ids and string names, at least one category, no id twice."""
    bad = [f"categories[{i}]" for i, c in enumerate(categories)
           if not _is_int(c["id"]) or not isinstance(c["name"], str)]
    if bad:
        raise DatasetError(f"{path}: category ids must be integers and names strings: {first_offenders(bad)}")
    if not categories:
        raise DatasetError(f"{path}: 'categories' is empty")
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        dups = sorted({i for i in ids if ids.count(i) > 1})
        raise DatasetError(f"{path}: duplicate category ids: {first_offenders(dups)}")


def _check_images(path: Path, images: list[dict]) -> None:
    """Positive integer sizes, valid ``<id>.jpg`` file names, no id or file name twice."""
    bad = []
    for index, image in enumerate(images):
        name = image["file_name"]
        if not (_is_int(image["height"]) and _is_int(image["width"]) and image["height"] > 0 and image["width"] > 0):
            bad.append(f"images[{index}] (height/width must be positive integers)")
        elif not isinstance(name, str) or not name.endswith(".jpg"):
            bad.append(f"images[{index}] (file_name {name!r} is not a .jpg name)")
        elif (reason := bad_id_reason(name[:-4])) is not None:
            bad.append(f"images[{index}] (file_name {name!r}: {reason})")
    if bad:
        raise DatasetError(f"{path}: invalid image entries: {first_offenders(bad)}")
    for key in ("id", "file_name"):
        seen, dups = set(), []
        for image in images:
            value = image[key]
            if value in seen:
                dups.append(repr(value))
            seen.add(value)
        if dups:
            raise DatasetError(f"{path}: duplicate image {key}s: {first_offenders(dups)}")


def _check_annotations(path: Path, data: dict) -> None:
    """Numeric area, iscrowd 0/1, and a category and an image that exist."""
    category_ids = {c["id"] for c in data["categories"]}
    image_ids = {image["id"] for image in data["images"]}
    unknown_category, unknown_image, bad_fields = [], [], []
    for index, ann in enumerate(data["annotations"]):
        label = _annotation_label(index, ann)
        if not _is_number(ann["area"]) or ann["iscrowd"] not in (0, 1, True, False):
            bad_fields.append(f"{label} (area {ann['area']!r}, iscrowd {ann['iscrowd']!r})")
        if ann["category_id"] not in category_ids:
            unknown_category.append(f"{label} (category {ann['category_id']!r})")
        if ann["image_id"] not in image_ids:
            unknown_image.append(f"{label} (image_id {ann['image_id']!r})")
    if bad_fields:
        raise DatasetError(f"{path}: annotations need a numeric area and iscrowd 0/1: {first_offenders(bad_fields)}")
    if unknown_category:
        raise DatasetError(f"{path}: annotations with category ids not in 'categories': "
                           f"{first_offenders(unknown_category)}")
    if unknown_image:
        raise DatasetError(f"{path}: annotations with image ids not in 'images': {first_offenders(unknown_image)}")


def load_instances(path: Path) -> dict:
    """Read and check the structure of an ``instances_*.json`` file (one-line errors naming it)."""
    data = _read_instances(path)
    _check_keys(path, data)
    _check_categories(path, data["categories"])
    _check_images(path, data["images"])
    _check_annotations(path, data)
    return data


def segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray | None:
    """Decode a COCO segmentation (polygons, uncompressed or compressed RLE) to an H x W uint8 0/1 map.

    Polygons with fewer than three points enclose nothing and are skipped; ``None`` when nothing is left.
    Raises ``ValueError`` for a malformed segmentation.
    """
    if isinstance(segmentation, list):
        polygons = []
        for polygon in segmentation:
            if not isinstance(polygon, list):
                raise ValueError("polygon must be a list of numbers")
            if len(polygon) % 2:
                raise ValueError(f"polygon with an odd number ({len(polygon)}) of coordinates")
            if len(polygon) >= 6:
                try:
                    polygons.append([float(v) for v in polygon])
                except (TypeError, ValueError):
                    raise ValueError("polygon must be a list of numbers") from None
        if not polygons:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not isinstance(size, list) or [int(v) for v in size] != [height, width]:
            raise ValueError(f"RLE size {size!r} differs from the image size [{height}, {width}]")
        if isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != height * width:
                raise ValueError(f"uncompressed RLE counts must be non-negative integers summing to {height * width}")
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        elif isinstance(counts, (str, bytes)):
            rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            raise ValueError("RLE counts must be a list or a string")
    else:
        raise ValueError(f"segmentation must be polygons or RLE, got {type(segmentation).__name__}")
    with warnings.catch_warnings():
        # pycocotools' Cython array wrapper predates numpy 2's __array__(copy=...) protocol.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*__array__")
        return mask_utils.decode(rle)


def rasterise(height: int, width: int, shapes: list[tuple[int, object]]) -> np.ndarray:
    """Paint ``(value, segmentation)`` shapes in the given order onto a zero H x W uint8 map."""
    label = np.zeros((height, width), dtype=np.uint8, order="F")  # pycocotools decodes column-major
    for value, segmentation in shapes:
        region = segmentation_to_mask(segmentation, height, width)
        if region is not None:
            np.copyto(label, value, where=region.astype(bool, copy=False))
    return np.ascontiguousarray(label)


def _convert_image(task) -> tuple[str, str] | None:
    """Check one image against its JSON size and write its semantic mask; ``(kind, detail)`` on failure."""
    image_path, target, height, width, shapes = task
    name = os.path.basename(image_path)
    try:
        with Image.open(image_path) as image:
            size = image.size
    except FileNotFoundError:
        return IMAGE_MISSING, name
    except Exception as exc:
        return IMAGE_UNREADABLE, f"{name} ({short_reason(exc)})"
    if size != (width, height):
        return IMAGE_SIZE, f"{name} (JSON {width}x{height}, file {size[0]}x{size[1]})"
    try:
        label = rasterise(height, width, [(value, segmentation) for _, value, segmentation in shapes])
    except Exception as exc:
        failed = "?"
        for ann_id, _, segmentation in shapes:
            try:
                segmentation_to_mask(segmentation, height, width)
            except Exception:
                failed = ann_id
                break
        return BAD_SEGMENTATION, f"annotation {failed} of {name} ({short_reason(exc)})"
    save_label_png(target, label)
    return None


def _instances_path(coco_root: Path, subset: str) -> Path:
    return coco_root / "annotations" / f"instances_{subset}.json"


def check_raw_coco(coco_root: Path, crowd: str) -> None:
    """The crowd mode is known and the raw COCO root has its image folders and annotation files (none is read)."""
    if crowd not in CROWD_MODES:
        raise ConfigError(f"coco.crowd: must be one of {', '.join(CROWD_MODES)}, got {crowd!r}")
    if not coco_root.is_dir():
        raise DatasetError(f"{coco_root}: COCO 2014 root not found ({COCO_HINT})")
    for subset in SUBSETS.values():
        if not (coco_root / subset).is_dir():
            raise DatasetError(f"{coco_root / subset}: COCO image folder not found ({COCO_HINT})")
        json_path = _instances_path(coco_root, subset)
        if not json_path.is_file():
            raise DatasetError(f"{json_path}: annotation file not found ({COCO_HINT})")


def _check_inputs(coco_root: Path, out_dir: Path, crowd: str) -> None:
    """Up-front checks: the raw root (:func:`check_raw_coco`) and an existing empty ``out_dir``."""
    check_raw_coco(coco_root, crowd)
    if not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: output folder not found (the caller creates it empty)")
    if any(out_dir.iterdir()):
        raise DatasetError(f"{out_dir}: output folder is not empty")


def _categories(json_path: Path, data: dict, reference: tuple[Path, list] | None) -> list[tuple[int, str]]:
    """``(id, name)`` in ascending id; equal to ``reference`` (first subset's file, categories) if given."""
    categories = sorted((c["id"], c["name"]) for c in data["categories"])
    if reference is not None and categories != reference[1]:
        raise DatasetError(f"{json_path}: categories differ from those of {reference[0]}")
    if len(categories) >= IGNORE_INDEX:
        raise DatasetError(f"{json_path}: {len(categories)} categories do not fit in a uint8 label map")
    return categories


def _annotated_images(json_path: Path, data: dict, image_dir: Path) -> tuple[list[dict], dict[object, list[dict]]]:
    """The images with at least one annotation (all present in ``image_dir``) and the annotations by image id."""
    by_image: dict[object, list[dict]] = defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    images = [image for image in data["images"] if image["id"] in by_image]
    if not images:
        raise DatasetError(f"{json_path}: no image has an annotation")
    present = {name for name in os.listdir(image_dir) if name.endswith(".jpg")}
    missing = sorted(image["file_name"] for image in images if image["file_name"] not in present)
    if missing:
        raise DatasetError(problem_message(CONVERT_MESSAGES[IMAGE_MISSING], missing, image_dir=image_dir,
                                           json_path=json_path))
    return images, by_image


def _shapes(anns: list[dict], contiguous: dict[int, int], crowd: str) -> list[tuple[object, int, object]]:
    """``(annotation id, value, segmentation)`` in painting order: decreasing area, JSON order on ties."""
    return [(ann.get("id", "?"),
             IGNORE_INDEX if crowd == "ignore" and ann["iscrowd"] else contiguous[ann["category_id"]],
             ann["segmentation"]) for ann in sorted(anns, key=lambda a: -a["area"])]


def _plan_subset(coco_root: Path, out_dir: Path, subset: str, crowd: str, reference: tuple[Path, list] | None,
                 labels: dict[str, list[int]]) -> tuple[list[tuple[int, str]], list[str], list[tuple]]:
    """Read one subset: its categories, sorted image names and :func:`_convert_image` tasks; adds the
    image-level labels to ``labels`` (the annotations are freed on return)."""
    json_path = _instances_path(coco_root, subset)
    data = load_instances(json_path)
    categories = _categories(json_path, data, reference)
    contiguous = {category_id: index for index, (category_id, _) in enumerate(categories, start=1)}
    image_dir = coco_root / subset
    images, by_image = _annotated_images(json_path, data, image_dir)
    mask_dir = out_dir / MASK_DIR / subset
    mask_dir.mkdir(parents=True)
    names, tasks = [], []
    for image in sorted(images, key=lambda im: im["file_name"][:-4]):
        stem = image["file_name"][:-4]
        if stem in labels:
            raise DatasetError(f"{json_path}: image name {stem!r} is also used in the other subset")
        labels[stem] = sorted({contiguous[ann["category_id"]] for ann in by_image[image["id"]]})
        names.append(stem)
        tasks.append((str(image_dir / image["file_name"]), str(mask_dir / f"{stem}.png"), image["height"],
                      image["width"], _shapes(by_image[image["id"]], contiguous, crowd)))
    return categories, names, tasks


def _raise_convert_problems(coco_root: Path, results: list[tuple[str, str] | None], roles: list[str]) -> None:
    """Raise the first conversion problem: kinds in :data:`CONVERT_ORDER`, then subsets (train first)."""
    for kind in CONVERT_ORDER:
        for role, subset in SUBSETS.items():
            offenders = [r[1] for r, s in zip(results, roles) if r is not None and r[0] == kind and s == role]
            if offenders:
                raise DatasetError(problem_message(CONVERT_MESSAGES[kind], offenders, image_dir=coco_root / subset,
                                                   json_path=_instances_path(coco_root, subset)))


def _write_dataset(coco_root: Path, out_dir: Path, classes: tuple[str, ...], lists: dict[str, list[str]],
                   labels: dict[str, list[int]], workers: int) -> DatasetManifest:
    """Write the id lists, labels and classes, validate the result, then write ``dataset.json``."""
    list_dir = out_dir / LIST_DIR
    list_dir.mkdir(parents=True)
    for role, source in SPLIT_SOURCES.items():
        write_text(list_dir / f"{role}.txt", "".join(f"{name}\n" for name in lists[source]))
    write_json(out_dir / LABELS_FILE, labels)
    write_text(out_dir / CLASSES_FILE, "".join(f"{name}\n" for name in classes))

    splits = {role: Split(list_dir / f"{role}.txt", coco_root / SUBSETS[source], out_dir / MASK_DIR / SUBSETS[source])
              for role, source in SPLIT_SOURCES.items()}
    manifest = DatasetManifest(root=out_dir, name="coco", classes=classes, splits=splits,
                               labels_file=out_dir / LABELS_FILE)
    validate_dataset(manifest, workers=workers)
    manifest.write()
    return manifest


def prepare_coco(coco_root: Path, out_dir: Path, crowd: str = "class", workers: int = 1) -> DatasetManifest:
    """Prepare MS COCO 2014 in ``out_dir`` (an existing empty folder) and return its manifest.

    ``dataset.json`` is written last, only after :func:`validate_dataset` accepted the result, so a
    failure leaves nothing in ``out_dir`` that claims to be complete. Raises :class:`DatasetError`
    (``ConfigError`` for an unknown ``crowd`` mode).
    """
    coco_root, out_dir = Path(coco_root), Path(out_dir)
    _check_inputs(coco_root, out_dir, crowd)
    reference: tuple[Path, list] | None = None  # the first subset's annotation file and categories
    labels: dict[str, list[int]] = {}
    lists: dict[str, list[str]] = {}
    tasks, task_roles = [], []
    for role, subset in SUBSETS.items():
        categories, lists[role], subset_tasks = _plan_subset(coco_root, out_dir, subset, crowd, reference, labels)
        reference = reference or (_instances_path(coco_root, subset), categories)
        tasks += subset_tasks
        task_roles += [role] * len(subset_tasks)
    classes = ("background",) + tuple(name for _, name in reference[1])

    results = parallel_map(_convert_image, tasks, workers, desc="coco masks")
    _raise_convert_problems(coco_root, results, task_roles)
    return _write_dataset(coco_root, out_dir, classes, lists, labels, workers)
