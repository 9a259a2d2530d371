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
# Message of each kind; fields: image_dir, mask_dir, split, top (largest class index), n, files.
PROBLEM_MESSAGES = {
    IMAGE_MISSING: "{image_dir}: {n} image(s) of {split} not found: {files}",
    IMAGE_UNREADABLE: "{image_dir}: {n} unreadable image(s) in {split}: {files}",
    MASK_MISSING: "{mask_dir}: {n} mask(s) of {split} not found: {files}",
    MASK_UNREADABLE: "{mask_dir}: {n} unreadable mask(s) in {split}: {files}",
    MASK_MODE: "{mask_dir}: masks must be 2-D palette (P) or grayscale (L) PNGs ({split}): {files}",
    MASK_VALUES: f"{{mask_dir}}: mask values out of range 0..{{top}}/{IGNORE_INDEX} ({{split}}): {{files}}",
    SIZE_MISMATCH: "{mask_dir}: mask size differs from its image size ({split}): {files}",
}


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


def with_reason(name: str, reason: str) -> str:
    """``name (reason)``, or ``name`` alone when there is no reason."""
    return name + (f" ({reason})" if reason else "")


def check_label(array: np.ndarray, num_classes: int, name: str,
                image_size: tuple[int, int] | None) -> tuple[str, str] | None:
    """Check a decoded mask's values, then its size against ``image_size`` (skipped when ``None``).

    ``None`` when fine, else ``(kind, detail)`` naming the mask file ``name``.
    """
    bad = bad_label_values(array, num_classes)
    if bad:
        values = ", ".join(str(v) for v in bad[:3]) + (", ..." if len(bad) > 3 else "")
        return MASK_VALUES, f"{name} (value{'s' if len(bad) > 1 else ''} {values})"
    height, width = array.shape
    if image_size is not None and (width, height) != image_size:
        return SIZE_MISMATCH, f"{name} (mask {width}x{height}, image {image_size[0]}x{image_size[1]})"
    return None


def problem_message(template: str, offenders: list[str], **fields) -> str:
    """``template`` filled with ``n`` (number of offenders), ``files`` (the first ones) and ``fields``."""
    return template.format(n=len(offenders), files=first_offenders(offenders), **fields)


def _check_item(task: tuple[str, str | None, int]) -> tuple[str, str] | None:
    """Check one image (and its mask): ``None`` when fine, else ``(kind, detail)``."""
    image_path, mask_path, num_classes = task
    kind, info = check_image(image_path)
    if kind is not None:
        return kind, with_reason(os.path.basename(image_path), info)
    if mask_path is None:
        return None
    mask_name = os.path.basename(mask_path)
    kind, array = read_mask(mask_path)
    if kind is not None:
        return kind, with_reason(mask_name, array)
    return check_label(array, num_classes, mask_name, info)


def _item_paths(manifest: DatasetManifest, role: str, ids: list[str]) -> list[tuple[str, str | None]]:
    """``(image, mask)`` paths of ``ids`` in split ``role``; the mask is ``None`` in a split without masks."""
    with_masks = manifest.split(role).mask_dir is not None
    return [(str(manifest.image_path(role, i)), str(manifest.mask_path(role, i)) if with_masks else None) for i in ids]


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
        for pair in _item_paths(manifest, role, ids[role]):
            tasks.setdefault(pair, len(tasks))
    task_list = [(image, mask, num_classes) for image, mask in tasks]
    results = parallel_map(_check_item, task_list, workers, desc=f"validate {manifest.name}")

    for role in roles:
        split = manifest.split(role)
        found: dict[str, list[str]] = {}
        for pair in _item_paths(manifest, role, ids[role]):
            result = results[tasks[pair]]
            if result is not None:
                found.setdefault(result[0], []).append(result[1])
        for kind in PROBLEM_ORDER:
            if kind in found:
                raise DatasetError(problem_message(PROBLEM_MESSAGES[kind], found[kind], image_dir=split.image_dir,
                                                   mask_dir=split.mask_dir, split=f"split '{role}'",
                                                   top=num_classes - 1))

    labelled_roles = [role for role in roles if role in SPLIT_ROLES]
    if labelled_roles:
        labels = manifest.class_labels()
        for role in labelled_roles:
            missing = [image_id for image_id in ids[role] if image_id not in labels]
            if missing:
                raise DatasetError(f"{manifest.labels_file}: no class labels for {len(missing)} id(s) of "
                                   f"split '{role}': {first_offenders(missing)}")
