"""Validation of a prepared dataset (docs/architecture.md, "Reliability rules").

:func:`validate_dataset` reads every split of a :class:`~sipe.data.manifest.DatasetManifest` and
checks that each listed image exists and is a readable image, that each mask exists, is a 2-D
palette/grayscale PNG with values in ``0..C-1`` or 255 and has its image's size, and that every
image of the ``train_aug``/``train``/``val`` roles has image-level class labels. The first problem
found is raised as one :class:`~sipe.errors.DatasetError` line naming the folder, the kind of
problem and the first offending files.

"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sipe.data.manifest import SPLIT_ROLES, DatasetManifest
from sipe.errors import DatasetError, first_offenders, one_line
from sipe.io import IGNORE_INDEX
from sipe.parallel import parallel_map

# Problem kinds, in the order they are reported (the first kind with offenders wins).
IMAGE_MISSING = "image_missing"
IMAGE_UNREADABLE = "image_unreadable"
MASK_MISSING = "mask_missing"
MASK_UNREADABLE = "mask_unreadable"
MASK_MODE = "mask_mode"
MASK_VALUES = "mask_values"
SIZE_MISMATCH = "size_mismatch"
PROBLEM_ORDER = (IMAGE_MISSING, IMAGE_UNREADABLE, MASK_MISSING, MASK_UNREADABLE, MASK_MODE, MASK_VALUES,
                 SIZE_MISMATCH)


def short_reason(exc: BaseException) -> str:
    """A short, single-line reason for a failed read (no paths, no tracebacks)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return one_line(exc, 80)


def check_image(path: str) -> tuple[str, str] | tuple[None, tuple[int, int]]:
    """Open an image cheaply: JPEGs are decoded at 1/8 scale (enough to notice truncated data).

    Returns ``(None, (width, height))`` or ``(kind, reason)``.
    """
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
        return None, size
    except FileNotFoundError:
        return IMAGE_MISSING, ""
    except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, ValueError, ...)
        return IMAGE_UNREADABLE, short_reason(exc)


def read_mask(path: str) -> tuple[str, str] | tuple[None, np.ndarray]:
    """Decode a label PNG as raw indices. Returns ``(None, array)`` or ``(kind, reason)``."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                return MASK_MODE, f"mode {image.mode}"
            array = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        return MASK_MISSING, ""
    except Exception as exc:
        return MASK_UNREADABLE, short_reason(exc)
    if array.ndim != 2:
        return MASK_MODE, f"shape {array.shape}"
    return None, array


def bad_label_values(array: np.ndarray, num_classes: int) -> list[int]:
    """The distinct values of a uint8 label map outside ``0..num_classes-1`` and 255."""
    outside = array >= num_classes
    if not outside.any():
        return []
    values = np.unique(array[outside])
    return values[values != IGNORE_INDEX].tolist()


def _check_item(task: tuple[str, str | None, int]) -> tuple[str, str] | None:
    """Check one image (and its mask): ``None`` when fine, else ``(kind, detail)``."""
    image_path, mask_path, num_classes = task
    kind, info = check_image(image_path)
    if kind is not None:
        return kind, f"{os.path.basename(image_path)}" + (f" ({info})" if info else "")
    if mask_path is None:
        return None
    mask_name = os.path.basename(mask_path)
    kind, array = read_mask(mask_path)
    if kind is not None:
        return kind, mask_name + (f" ({array})" if array else "")
    bad = bad_label_values(array, num_classes)
    if bad:
        values = ", ".join(str(v) for v in bad[:3]) + (", ..." if len(bad) > 3 else "")
        return MASK_VALUES, f"{mask_name} (value{'s' if len(bad) > 1 else ''} {values})"
    height, width = array.shape
    if (width, height) != info:
        return SIZE_MISMATCH, f"{mask_name} (mask {width}x{height}, image {info[0]}x{info[1]})"
    return None


def _problem_message(kind: str, role: str, image_dir: Path, mask_dir: Path | None, num_classes: int,
                     offenders: list[str]) -> str:
    n = len(offenders)
    files = first_offenders(offenders)
    split = f"split '{role}'"
    if kind == IMAGE_MISSING:
        return f"{image_dir}: {n} image(s) of {split} not found: {files}"
    if kind == IMAGE_UNREADABLE:
        return f"{image_dir}: {n} unreadable image(s) in {split}: {files}"
    if kind == MASK_MISSING:
        return f"{mask_dir}: {n} mask(s) of {split} not found: {files}"
    if kind == MASK_UNREADABLE:
        return f"{mask_dir}: {n} unreadable mask(s) in {split}: {files}"
    if kind == MASK_MODE:
        return f"{mask_dir}: masks must be 2-D palette (P) or grayscale (L) PNGs ({split}): {files}"
    if kind == MASK_VALUES:
        return f"{mask_dir}: mask values out of range 0..{num_classes - 1}/{IGNORE_INDEX} ({split}): {files}"
    if kind == SIZE_MISMATCH:
        return f"{mask_dir}: mask size differs from its image size ({split}): {files}"
    raise AssertionError(kind)


def validate_dataset(manifest: DatasetManifest, roles: Iterable[str] | None = None, workers: int = 1) -> None:
    """Check every listed image, mask and class label of ``manifest`` (all splits unless ``roles``).

    Raises :class:`DatasetError` (one line) for the first problem found: splits in manifest order,
    within a split the problem kinds in :data:`PROBLEM_ORDER`, then missing class labels.
    An (image, mask) pair listed by several splits (``train`` is part of ``train_aug``) is read once.
    """
    roles = list(manifest.splits) if roles is None else list(roles)
    num_classes = manifest.num_classes
    if num_classes < 2:
        raise DatasetError(f"{manifest.root}: dataset {manifest.name!r} needs background and at least one class")

    # Read every id list first: a broken list is reported before any file is opened.
    ids = {role: manifest.ids(role) for role in roles}
    for role in roles:
        split = manifest.split(role)
        if not split.image_dir.is_dir():
            raise DatasetError(f"{split.image_dir}: image folder of split '{role}' not found")
        if split.mask_dir is not None and not split.mask_dir.is_dir():
            raise DatasetError(f"{split.mask_dir}: mask folder of split '{role}' not found")

    tasks: dict[tuple[str, str | None], int] = {}
    for role in roles:
        split = manifest.split(role)
        for image_id in ids[role]:
            image = str(manifest.image_path(role, image_id))
            mask = None if split.mask_dir is None else str(manifest.mask_path(role, image_id))
            tasks.setdefault((image, mask), len(tasks))
    task_list = [(image, mask, num_classes) for image, mask in tasks]
    results = parallel_map(_check_item, task_list, workers, desc=f"validate {manifest.name}")

    for role in roles:
        split = manifest.split(role)
        found: dict[str, list[str]] = {}
        for image_id in ids[role]:
            image = str(manifest.image_path(role, image_id))
            mask = None if split.mask_dir is None else str(manifest.mask_path(role, image_id))
            result = results[tasks[(image, mask)]]
            if result is not None:
                found.setdefault(result[0], []).append(result[1])
        for kind in PROBLEM_ORDER:
            if kind in found:
                raise DatasetError(_problem_message(kind, role, split.image_dir, split.mask_dir, num_classes,
                                                    found[kind]))

    labelled_roles = [role for role in roles if role in SPLIT_ROLES]
    if labelled_roles:
        labels = manifest.class_labels()
        for role in labelled_roles:
            missing = [image_id for image_id in ids[role] if image_id not in labels]
            if missing:
                raise DatasetError(f"{manifest.labels_file}: no class labels for {len(missing)} id(s) of "
                                   f"split '{role}': {first_offenders(missing)}")
