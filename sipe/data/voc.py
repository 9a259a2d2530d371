"""PASCAL VOC 2012 + SBD ("train_aug") preparation (docs/method.md A.1, A.2).

:func:`prepare_voc` turns a VOC 2012 root and an SBD ``dataset/`` root into a prepared dataset
(``dataset.json``, see :mod:`sipe.data.manifest`) in an empty output folder::

    SegmentationClassAug/<id>.png        VOC mask where VOC has one (keeps its 255 borders), else SBD
    ImageSets/Segmentation/train_aug.txt (VOC train | SBD train | SBD val) - VOC val  (10,582 ids)
    ImageSets/Segmentation/train.txt     VOC train (1,464)
    ImageSets/Segmentation/val.txt       VOC val (1,449)
    ImageSets/Segmentation/test.txt      VOC test, when the VOC root has it (images only)
    cls_labels.json                      id -> sorted class indices 1..20 from Annotations/<id>.xml
    classes.txt                          one class name per line, line i = class i (0 = background)
    dataset.json                         written last, after validation

Images are not copied: the manifest points at ``<voc_root>/JPEGImages``. Nothing is ever
written into the VOC or SBD roots.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import scipy.io

from sipe.data.manifest import DatasetManifest, Split, read_id_list
from sipe.data.validate import (MASK_MISSING, MASK_MODE, MASK_UNREADABLE, MASK_VALUES, SIZE_MISMATCH, check_image,
                                check_label, problem_message, read_mask, short_reason, validate_dataset,
                                with_reason)
from sipe.errors import DatasetError
from sipe.io import save_label_png, write_json, write_text
from sipe.parallel import parallel_map

VOC_CLASSES = (
    "background",
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_CLASS_INDEX = {name: index for index, name in enumerate(VOC_CLASSES) if index > 0}

VOC_HINT = ("download VOCtrainval_11-May-2012.tar from the PASCAL VOC site, extract it and set voc.root "
            "to its VOCdevkit/VOC2012 folder")
SBD_HINT = ("download SBD benchmark.tgz (Hariharan et al., Semantic Boundaries Dataset), extract it and set "
            "voc.sbd_root to its benchmark_RELEASE/dataset folder")

LIST_DIR = Path("ImageSets") / "Segmentation"
MASK_DIR = "SegmentationClassAug"
LABELS_FILE = "cls_labels.json"
CLASSES_FILE = "classes.txt"

# Conversion problems, reported in this order (mask kinds shared with validation), and their messages.
SBD_NO_SEGMENTATION = "sbd_no_segmentation"
CONVERT_ORDER = (MASK_MISSING, MASK_UNREADABLE, SBD_NO_SEGMENTATION, MASK_MODE, MASK_VALUES, SIZE_MISMATCH)
CONVERT_MESSAGES = {
    MASK_MISSING: "{source_dir}: {n} mask(s) not found: {files}",
    MASK_UNREADABLE: "{source_dir}: {n} unreadable mask file(s): {files}",
    SBD_NO_SEGMENTATION: "{source_dir}: {n} SBD .mat file(s) unreadable or without a GTcls.Segmentation field: {files}",
    MASK_MODE: "{source_dir}: masks must be 2-D palette (P) or grayscale (L) PNGs: {files}",
    MASK_VALUES: "{source_dir}: mask values out of range 0..{top}/255: {files}",
    SIZE_MISMATCH: "{source_dir}: mask size differs from its JPEGImages image: {files}",
}


def _stems(folder: Path, ext: str) -> set[str]:
    """File stems with extension ``ext`` in ``folder`` (one directory listing, no per-file stat)."""
    return {name[: -len(ext)] for name in os.listdir(folder) if name.endswith(ext)}


def _require_dir(path: Path, what: str, hint: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found ({hint})")


def _require_file(path: Path, what: str, hint: str) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found ({hint})")


def read_sbd_segmentation(path: str | os.PathLike) -> np.ndarray:
    """The ``GTcls.Segmentation`` class-id map (uint8 H x W) of an SBD ``cls/<id>.mat`` file.

    Raises :class:`DatasetError` naming the file when it cannot be read or lacks the field.
    """
    try:
        contents = scipy.io.loadmat(path, variable_names=["GTcls"])
    except FileNotFoundError:
        raise DatasetError(f"{path}: SBD .mat file not found") from None
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read SBD .mat file ({short_reason(exc)})") from None
    gtcls = contents.get("GTcls")
    if not isinstance(gtcls, np.ndarray) or gtcls.dtype.names is None or "Segmentation" not in gtcls.dtype.names \
            or gtcls.size != 1:
        raise DatasetError(f"{path}: no GTcls.Segmentation struct field (expected an SBD cls/ file)")
    segmentation = np.asarray(gtcls["Segmentation"].flat[0])
    if segmentation.ndim != 2 or segmentation.dtype.kind not in "ui" or segmentation.size == 0:
        raise DatasetError(f"{path}: GTcls.Segmentation must be a 2-D integer array, got "
                           f"{segmentation.dtype} {segmentation.shape}")
    if segmentation.min() < 0 or segmentation.max() > 255:
        raise DatasetError(f"{path}: GTcls.Segmentation values out of range 0..255")
    return segmentation.astype(np.uint8)


def _convert_mask(task: tuple[str, str, str, str]) -> tuple[str, str] | None:
    """Write one ``SegmentationClassAug`` PNG from a VOC PNG or an SBD .mat; ``(kind, detail)`` on failure."""
    source_kind, source, image_path, target = task
    name = os.path.basename(source)
    if source_kind == "voc":
        kind, array = read_mask(source)
        if kind is not None:
            return kind, with_reason(name, array)
    else:
        try:
            array = read_sbd_segmentation(source)
        except DatasetError as exc:
            reason = str(exc).split(": ", 1)[-1]
            return SBD_NO_SEGMENTATION, f"{name} ({reason})"
    # An unreadable image is reported by the validation that follows, naming the image.
    image_kind, info = check_image(image_path)
    problem = check_label(array, len(VOC_CLASSES), name, info if image_kind is None else None)
    if problem is None:
        save_label_png(target, np.ascontiguousarray(array))
    return problem


def read_voc_labels(xml_path: str | os.PathLike) -> list[int]:
    """Sorted VOC class indices (1..20) of the objects in one ``Annotations/<id>.xml`` (docs/method.md A.2).

    Every ``<object>`` counts, difficult and truncated ones included; ``<part>`` names (head, hand,
    foot) are nested inside objects and are not read. An unknown object name is an error.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{xml_path}: annotation XML not found") from None
    except (ET.ParseError, OSError) as exc:
        raise DatasetError(f"{xml_path}: cannot parse annotation XML ({short_reason(exc)})") from None
    classes = set()
    for number, obj in enumerate(root.iter("object"), start=1):
        name_node = obj.find("name")
        name = (name_node.text or "").strip() if name_node is not None else ""
        if not name:
            raise DatasetError(f"{xml_path}: <object> #{number} has no <name>")
        if name not in VOC_CLASS_INDEX:
            raise DatasetError(f"{xml_path}: unknown class name {name!r} in <object> #{number} "
                               f"(expected one of the 20 VOC classes, e.g. 'aeroplane', 'tvmonitor')")
        classes.add(VOC_CLASS_INDEX[name])
    return sorted(classes)


def _read_labels_task(xml_path: str) -> list[int] | str:
    try:
        return read_voc_labels(xml_path)
    except DatasetError as exc:
        return str(exc)


def check_raw_voc(voc_root: Path, sbd_root: Path) -> None:
    """The raw VOC 2012 and SBD roots have their folders and list files (no file is read)."""
    _require_dir(voc_root, "VOC 2012 root", VOC_HINT)
    for sub in ("JPEGImages", "SegmentationClass", "Annotations"):
        _require_dir(voc_root / sub, f"VOC {sub} folder", VOC_HINT)
    for name in ("train.txt", "val.txt"):
        _require_file(voc_root / LIST_DIR / name, "VOC segmentation list", VOC_HINT)
    _require_dir(sbd_root, "SBD root", SBD_HINT)
    _require_dir(sbd_root / "cls", "SBD cls/ folder", SBD_HINT)
    for name in ("train.txt", "val.txt"):
        _require_file(sbd_root / name, "SBD list", SBD_HINT)


def _check_inputs(voc_root: Path, sbd_root: Path, out_dir: Path) -> None:
    """Up-front checks: the raw roots (:func:`check_raw_voc`) and an existing empty ``out_dir``."""
    check_raw_voc(voc_root, sbd_root)
    if not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: output folder not found (the caller creates it empty)")
    if any(out_dir.iterdir()):
        raise DatasetError(f"{out_dir}: output folder is not empty")


def _read_lists(voc_root: Path, sbd_root: Path) -> dict[str, list[str] | None]:
    """The id lists in file order: VOC train, val and test (``None`` without test.txt), SBD train and val."""
    voc_lists = voc_root / LIST_DIR
    return {"voc_train": read_id_list(voc_lists / "train.txt"),
            "voc_val": read_id_list(voc_lists / "val.txt"),
            "voc_test": read_id_list(voc_lists / "test.txt") if (voc_lists / "test.txt").is_file() else None,
            "sbd_train": read_id_list(sbd_root / "train.txt"),
            "sbd_val": read_id_list(sbd_root / "val.txt")}


def _split_lists(raw: dict[str, list[str] | None]) -> dict[str, list[str]]:
    """Sorted ids of each split: train_aug = (VOC train | SBD train | SBD val) - VOC val, train, val, test."""
    train_aug = sorted((set(raw["voc_train"]) | set(raw["sbd_train"]) | set(raw["sbd_val"])) - set(raw["voc_val"]))
    lists = {"train_aug": train_aug, "train": sorted(raw["voc_train"]), "val": sorted(raw["voc_val"])}
    if raw["voc_test"] is not None:
        lists["test"] = sorted(raw["voc_test"])
    return lists


def _require_found(missing: list[str], folder: Path, what: str) -> None:
    """Raise ``<folder>: <n> <what> not found: <first files>`` when ``missing`` is not empty."""
    if missing:
        raise DatasetError(problem_message("{folder}: {n} {what} not found: {files}", missing, folder=folder,
                                           what=what))


def _check_sources(voc_root: Path, sbd_root: Path, raw: dict[str, list[str] | None], labelled: list[str]) -> set[str]:
    """Check that every listed id has its image, VOC or SBD mask and XML; return the ids with a VOC mask."""
    jpegs = _stems(voc_root / "JPEGImages", ".jpg")
    voc_masks = _stems(voc_root / "SegmentationClass", ".png")
    xmls = _stems(voc_root / "Annotations", ".xml")
    sbd_mats = _stems(sbd_root / "cls", ".mat")
    test_only = [] if raw["voc_test"] is None else sorted(set(raw["voc_test"]) - set(labelled))
    _require_found([f"{i}.jpg" for i in labelled + test_only if i not in jpegs], voc_root / "JPEGImages",
                   "listed image(s)")
    for list_name, key in (("train.txt", "voc_train"), ("val.txt", "voc_val")):
        _require_found([f"{i}.png" for i in raw[key] if i not in voc_masks], voc_root / "SegmentationClass",
                       f"mask(s) of ids in {voc_root / LIST_DIR / list_name}")
    _require_found([f"{i}.mat" for i in labelled if i not in voc_masks and i not in sbd_mats], sbd_root / "cls",
                   f"SBD mask(s) of ids in {sbd_root / 'train.txt'} or {sbd_root / 'val.txt'}")
    _require_found([f"{i}.xml" for i in labelled if i not in xmls], voc_root / "Annotations", "annotation XML(s)")
    return voc_masks


def _read_labels(voc_root: Path, ids: list[str], workers: int) -> dict[str, list[int]]:
    """Image-level labels of ``ids`` from their XML annotations (docs/method.md A.2)."""
    xml_paths = [str(voc_root / "Annotations" / f"{i}.xml") for i in ids]
    labels = {}
    for image_id, result in zip(ids, parallel_map(_read_labels_task, xml_paths, workers, desc="voc labels")):
        if isinstance(result, str):
            raise DatasetError(result)
        labels[image_id] = result
    return labels


def _mask_task(voc_root: Path, sbd_root: Path, mask_dir: Path, image_id: str, voc_masks: set[str]) -> tuple:
    """The :func:`_convert_mask` task of one id: its VOC PNG when VOC has one, else its SBD .mat."""
    if image_id in voc_masks:
        source = ("voc", str(voc_root / "SegmentationClass" / f"{image_id}.png"))
    else:
        source = ("sbd", str(sbd_root / "cls" / f"{image_id}.mat"))
    return source + (str(voc_root / "JPEGImages" / f"{image_id}.jpg"), str(mask_dir / f"{image_id}.png"))


def _raise_convert_problems(tasks: list[tuple], results: list[tuple[str, str] | None]) -> None:
    """Raise the first conversion problem: kinds in :data:`CONVERT_ORDER`, then source folders in task order."""
    problems: dict[tuple[str, str], list[str]] = {}
    for task, result in zip(tasks, results):
        if result is not None:
            source_dir = str(Path(task[1]).parent)
            problems.setdefault((result[0], source_dir), []).append(result[1])
    for kind in CONVERT_ORDER:
        for (found_kind, source_dir), offenders in problems.items():
            if found_kind == kind:
                raise DatasetError(problem_message(CONVERT_MESSAGES[kind], offenders, source_dir=Path(source_dir),
                                                   top=len(VOC_CLASSES) - 1))


def _write_dataset(voc_root: Path, out_dir: Path, lists: dict[str, list[str]], labels: dict[str, list[int]],
                   workers: int) -> DatasetManifest:
    """Write the id lists, labels and classes, validate the result, then write ``dataset.json``."""
    list_dir = out_dir / LIST_DIR
    list_dir.mkdir(parents=True)
    for role, ids in lists.items():
        write_text(list_dir / f"{role}.txt", "".join(f"{i}\n" for i in ids))
    write_json(out_dir / LABELS_FILE, labels)
    write_text(out_dir / CLASSES_FILE, "".join(f"{name}\n" for name in VOC_CLASSES))

    images, masks = voc_root / "JPEGImages", out_dir / MASK_DIR
    splits = {role: Split(list_dir / f"{role}.txt", images, None if role == "test" else masks) for role in lists}
    manifest = DatasetManifest(root=out_dir, name="voc", classes=VOC_CLASSES, splits=splits,
                               labels_file=out_dir / LABELS_FILE)
    validate_dataset(manifest, workers=workers)
    manifest.write()
    return manifest


def prepare_voc(voc_root: Path, sbd_root: Path, out_dir: Path, workers: int = 1) -> DatasetManifest:
    """Prepare PASCAL VOC 2012 + SBD in ``out_dir`` (an existing empty folder) and return its manifest.

    ``dataset.json`` is written last, only after :func:`validate_dataset` accepted the result, so a
    failure leaves nothing in ``out_dir`` that claims to be complete. Raises :class:`DatasetError`.
    """
    voc_root, sbd_root, out_dir = Path(voc_root), Path(sbd_root), Path(out_dir)
    _check_inputs(voc_root, sbd_root, out_dir)
    raw = _read_lists(voc_root, sbd_root)
    lists = _split_lists(raw)
    labelled = sorted(set(lists["train_aug"]) | set(lists["val"]))
    voc_masks = _check_sources(voc_root, sbd_root, raw, labelled)
    labels = _read_labels(voc_root, labelled, workers)

    # Masks: VOC PNG where VOC has one, else the SBD .mat.
    mask_dir = out_dir / MASK_DIR
    mask_dir.mkdir()
    tasks = [_mask_task(voc_root, sbd_root, mask_dir, image_id, voc_masks) for image_id in labelled]
    _raise_convert_problems(tasks, parallel_map(_convert_mask, tasks, workers, desc="voc masks"))
    return _write_dataset(voc_root, out_dir, lists, labels, workers)
