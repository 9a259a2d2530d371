"""Descriptive statistics of a prepared dataset split (any dataset with masks: synthetic, VOC, COCO).

Objects are counted as the connected components (8-connectivity) of each class in a mask;
components smaller than :data:`MIN_COMPONENT` pixels are ignored (fragments left between void
bands). Areas are fractions of the image they lie in.
"""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from sipe.data.manifest import DatasetManifest
from sipe.errors import DatasetError
from sipe.io import IGNORE_INDEX, read_label_png

MIN_COMPONENT = 4
_EIGHT = np.ones((3, 3), dtype=bool)


def mask_objects(label: np.ndarray, num_classes: int, source: str = "mask") -> dict:
    """Per-mask counts: pixels per class (index 0..num_classes-1), ignore pixels, and the sizes of the
    connected components (>= :data:`MIN_COMPONENT` px) of every foreground class.

    Raises :class:`DatasetError` for values outside 0..num_classes-1 and 255.
    """
    counts = np.bincount(label.ravel(), minlength=256)
    bad = [int(v) for v in np.flatnonzero(counts) if v >= num_classes and v != IGNORE_INDEX]
    if bad:
        raise DatasetError(f"{source}: label values out of range 0..{num_classes - 1} (and 255): "
                           f"{', '.join(str(v) for v in bad[:5])}")
    components: dict[int, list[int]] = {}
    for cls in np.flatnonzero(counts[1:num_classes]) + 1:
        lab, n = ndimage.label(label == cls, structure=_EIGHT)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        components[int(cls)] = [int(x) for x in sizes if x >= MIN_COMPONENT]
    return {"pixels": label.size, "class_pixels": counts[:num_classes].astype(np.int64),
            "ignore": int(counts[IGNORE_INDEX]), "components": components}


def _mask_task(args):
    path, num_classes = args
    try:
        label = read_label_png(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: mask not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable mask ({exc})") from None
    return mask_objects(label, num_classes, str(path))


def dataset_statistics(manifest: DatasetManifest, role: str, workers: int = 1) -> tuple[dict, pd.DataFrame]:
    """Statistics of split ``role``: a JSON-ready summary and a per-class table.

    Summary keys: ``images``, ``classes`` (foreground classes C), ``fg_classes_per_image_mean`` /
    ``_max`` (from the image-level labels), ``objects``, ``objects_per_image_mean``,
    ``object_area_fraction_mean`` (mean over objects of area / image area),
    ``background_pixel_fraction``, ``ignore_pixel_fraction`` (over all pixels of the split).
    The table has one row per foreground class (index = class name) with columns ``class_index``,
    ``images`` (images whose label holds it), ``objects``, ``mean_area_fraction`` (NaN without
    objects) and ``pixel_fraction``.
    """
    ids = manifest.ids(role)
    labels = manifest.class_labels()
    missing = [i for i in ids if i not in labels]
    if missing:
        raise DatasetError(f"{manifest.labels_file}: no class labels for ids of split {role!r}: "
                           f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    num_classes = manifest.num_classes
    tasks = [(manifest.mask_path(role, i), num_classes) for i in ids]

    class_pixels = np.zeros(num_classes, np.int64)
    total_pixels = ignore_pixels = 0
    objects_per_class = np.zeros(num_classes, np.int64)
    area_sum_per_class = np.zeros(num_classes, np.float64)
    object_fractions: list[float] = []
    bar = tqdm(total=len(tasks), desc=f"statistics {role}", unit="img", file=sys.stderr, mininterval=0.5)
    pool = None
    try:
        if workers > 1:
            pool = multiprocessing.get_context("spawn").Pool(processes=workers)
            results = pool.imap(_mask_task, tasks, chunksize=max(1, min(32, len(tasks) // (workers * 4))))
        else:
            results = map(_mask_task, tasks)
        for result in results:
            total_pixels += result["pixels"]
            ignore_pixels += result["ignore"]
            class_pixels += result["class_pixels"]
            for cls, sizes in result["components"].items():
                fractions = [s / result["pixels"] for s in sizes]
                objects_per_class[cls] += len(sizes)
                area_sum_per_class[cls] += sum(fractions)
                object_fractions.extend(fractions)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    per_image = np.array([len(labels[i]) for i in ids], dtype=np.int64)
    images_per_class = np.zeros(num_classes, np.int64)
    for i in ids:
        for cls in labels[i]:
            images_per_class[cls] += 1
    n_images = len(ids)
    summary = {
        "images": n_images,
        "classes": num_classes - 1,
        "fg_classes_per_image_mean": float(per_image.mean()),
        "fg_classes_per_image_max": int(per_image.max()),
        "objects": len(object_fractions),
        "objects_per_image_mean": len(object_fractions) / n_images,
        "object_area_fraction_mean": float(np.mean(object_fractions)) if object_fractions else 0.0,
        "background_pixel_fraction": float(class_pixels[0] / total_pixels),
        "ignore_pixel_fraction": float(ignore_pixels / total_pixels),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_area = area_sum_per_class / objects_per_class
    per_class = pd.DataFrame({
        "class_index": np.arange(1, num_classes),
        "images": images_per_class[1:],
        "objects": objects_per_class[1:],
        "mean_area_fraction": np.where(objects_per_class[1:] > 0, mean_area[1:], np.nan),
        "pixel_fraction": class_pixels[1:] / total_pixels,
    }, index=pd.Index(list(manifest.classes[1:]), name="class"))
    return summary, per_class
