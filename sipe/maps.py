"""Localisation maps: multi-scale IS-CAM / CAM inference, the per-image map file and label maps.

Inference follows docs/method.md A.5 and D (the authors' ``make_cam.py``): for every scale the image is
PIL-bicubic resized, ImageNet-normalised and passed as the pair [image, hflip(image)] through
``SIPENet.infer``; each scale's maps are upsampled bilinearly (align_corners=False) to the image
size, the scales are **summed**, and every channel is divided by its own max + 1e-5. The same
fusion is applied to the IS-CAM and to the (ReLU'd, flip-summed) raw CAM, the baseline of the
paper's Fig. 8.

The map file (docs/architecture.md, "Data formats between stages"): one pickle-free ``.npz`` per image with

* ``keys``   int64   [K+1]      0 (background) then the present class ids, increasing;
* ``is_cam`` float16 [K+1,H,W]  IS-CAM rows aligned with ``keys``;
* ``cam``    float16 [K,H,W]    CAM rows aligned with ``keys[1:]`` (foreground only).

Only the background and the present classes are kept (docs/method.md D). Label maps (docs/method.md D eval_cam):
``keys[argmax IS-CAM]`` with no threshold; the CAM baseline puts a constant background score in
front of the CAM rows before the argmax.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sipe.data.transforms import normalize_image, scaled_size
from sipe.device import model_device
from sipe.errors import SipeError, first_offenders, one_line
from sipe.io import IGNORE_INDEX, atomic_path, check_complete
from sipe.viz import check_rgb

DEFAULT_SCALES = (1.0, 0.5, 1.5, 2.0)  # docs/method.md A.5 (the order does not change the sum)
MAX_NORM_EPS = 1e-5  # docs/method.md D: each fused channel is divided by its max + 1e-5
MAP_DTYPE = np.float16
MAP_SUFFIX = ".npz"


class MapError(SipeError):
    """A localisation-map file that is missing, unreadable or inconsistent (one-line message)."""


# --------------------------------------------------------------------------------------------
# Inference

def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` (uint8 [H,W,3]) PIL-bicubic resized to (round(H·s), round(W·s)) (docs/method.md A.5); scale 1 is a no-op."""
    height, width = image.shape[:2]
    size = scaled_size(height, width, scale)
    if size == (height, width):
        return image
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(resized)


def check_scales(scales: Sequence[float] | None) -> tuple[float, ...]:
    """``scales`` (``None``: :data:`DEFAULT_SCALES`) as floats; one-line error unless all are positive."""
    scales = tuple(float(s) for s in (DEFAULT_SCALES if scales is None else scales))
    if not scales or any(not (s > 0) for s in scales):
        raise SipeError(f"cams.scales: need at least one positive scale, got {list(scales)}")
    return scales


def max_normalize(maps: torch.Tensor, eps: float = MAX_NORM_EPS) -> torch.Tensor:
    """Each channel of ``maps`` [K,H,W] divided by its max over (H, W) plus ``eps`` (docs/method.md D)."""
    return maps / (maps.amax(dim=(1, 2), keepdim=True) + eps)


def multiscale_maps(model, image: np.ndarray, label, scales: Sequence[float] = DEFAULT_SCALES,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fused multi-scale + flip maps of one image (docs/method.md A.5, D): ``(cam [C,H,W], is_cam [C+1,H,W])``, float32 numpy.

    ``image`` is uint8 RGB [H,W,3] at its original size; ``label`` is the 0/1 vector [C+1] of the
    image-level labels with ``label[0] = 1`` (background). Per scale: bicubic resize, ImageNet
    normalisation (``sipe.data.transforms.normalize_image``, the training one), ``model.infer``
    (which builds and sums the flip pair), bilinear upsampling
    (align_corners=False) to (H, W); the scales are summed and each channel is max-normalised
    (max + 1e-5), for the IS-CAM and for the CAM alike. Values lie in [0, 1); a channel that is
    zero everywhere (an absent class) stays zero. Runs on the model's device, without autograd.
    """
    image = check_rgb(image)
    if not scales:
        raise ValueError("need at least one scale")
    if any(not (s > 0) for s in scales):
        raise ValueError(f"scales must be positive, got {list(scales)}")
    device = model_device(model)
    label = torch.as_tensor(np.asarray(label), dtype=torch.float32, device=device).reshape(-1)
    if label.numel() < 2 or float(label[0]) != 1.0:
        raise ValueError(f"label must be a [C+1] 0/1 vector with label[0] = 1, got {label.tolist()}")
    height, width = image.shape[:2]
    cam_sum = is_cam_sum = None
    with torch.no_grad():
        for scale in scales:
            x = normalize_image(rescale_image(image, scale))[None].to(device)  # [1,3,h,w], docs/method.md A.4 mean/std
            cam, is_cam = model.infer(x, label)
            cam = F.interpolate(cam[None].float(), (height, width), mode="bilinear", align_corners=False)[0]
            is_cam = F.interpolate(is_cam[None].float(), (height, width), mode="bilinear", align_corners=False)[0]
            cam_sum = cam if cam_sum is None else cam_sum + cam
            is_cam_sum = is_cam if is_cam_sum is None else is_cam_sum + is_cam
        if cam_sum.shape[0] + 1 != label.numel() or is_cam_sum.shape[0] != label.numel():
            raise ValueError(f"model returned {cam_sum.shape[0]} CAM and {is_cam_sum.shape[0]} IS-CAM channels "
                             f"for a label vector of {label.numel()} (expected C and C+1)")
        cam = max_normalize(F.relu(cam_sum))
        is_cam = max_normalize(F.relu(is_cam_sum))
    return cam.cpu().numpy(), is_cam.cpu().numpy()


# --------------------------------------------------------------------------------------------
# The map file

def label_vector(class_ids: Sequence[int], num_classes: int) -> np.ndarray:
    """0/1 float32 vector [num_classes] (including background) with the background and ``class_ids`` set."""
    vec = np.zeros(num_classes, dtype=np.float32)
    vec[0] = 1.0
    ids = list(class_ids)
    if any(not 1 <= c < num_classes for c in ids):
        raise ValueError(f"class ids must lie in 1..{num_classes - 1}, got {ids}")
    vec[ids] = 1.0
    return vec


def map_keys(class_ids: Sequence[int]) -> np.ndarray:
    """``keys`` of a map file: int64 [K+1], 0 then the sorted, distinct present class ids."""
    return np.asarray([0, *sorted(set(int(c) for c in class_ids))], dtype=np.int64)


def select_present(keys: np.ndarray, cam: np.ndarray, is_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full maps (cam [C,H,W], is_cam [C+1,H,W]) → the rows of ``keys`` (cam [K,H,W], is_cam [K+1,H,W])."""
    keys = np.asarray(keys, dtype=np.int64)
    return cam[keys[1:] - 1], is_cam[keys]


def _check_keys(keys: np.ndarray, where: str) -> None:
    if keys.ndim != 1 or keys.size < 1 or keys[0] != 0:
        raise MapError(f"{where}: keys must be a 1-D list starting with 0, got {keys.tolist()}")
    if keys.size > 1 and (np.any(np.diff(keys) <= 0) or keys[-1] >= IGNORE_INDEX):
        raise MapError(f"{where}: keys must be increasing class ids below {IGNORE_INDEX}, got {keys.tolist()}")


def _check_shapes(keys: np.ndarray, cam: np.ndarray, is_cam: np.ndarray, where: str) -> None:
    if is_cam.ndim != 3 or is_cam.shape[0] != keys.size:
        raise MapError(f"{where}: is_cam must be [{keys.size},H,W] for {keys.size} keys, got shape {is_cam.shape}")
    if cam.shape != (keys.size - 1, *is_cam.shape[1:]):
        raise MapError(f"{where}: cam must be [{keys.size - 1},{is_cam.shape[1]},{is_cam.shape[2]}] "
                       f"(foreground keys, is_cam size), got shape {cam.shape}")
    if min(is_cam.shape[1:]) < 1:
        raise MapError(f"{where}: empty map of size {is_cam.shape[1:]}")


def save_maps(path: str | os.PathLike, keys, cam, is_cam) -> None:
    """Write one image's maps (already reduced to ``keys``, see :func:`select_present`) as float16 ``.npz``.

    Compressed, pickle-free, written to a temporary sibling and renamed (atomic). Raises
    :class:`MapError` for keys or shapes that do not fit together, or non-finite values.
    """
    keys = np.asarray(keys)
    where = str(path)
    if not np.issubdtype(keys.dtype, np.integer):
        raise MapError(f"{where}: keys must be integers, got {keys.dtype}")
    keys = keys.astype(np.int64)
    cam, is_cam = np.asarray(cam), np.asarray(is_cam)
    _check_keys(keys, where)
    _check_shapes(keys, cam, is_cam, where)
    if not (np.all(np.isfinite(cam)) and np.all(np.isfinite(is_cam))):
        raise MapError(f"{where}: maps hold NaN or infinite values")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, keys=keys, cam=cam.astype(MAP_DTYPE), is_cam=is_cam.astype(MAP_DTYPE))


def load_maps(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a map file: ``(keys int64 [K+1], cam float16 [K,H,W], is_cam float16 [K+1,H,W])``.

    One-line :class:`MapError` for a missing, truncated or otherwise unreadable file, a pickled
    or missing array, a wrong dtype, shapes that do not fit together, or NaN or infinite values.
    """
    where = str(path)
    if not os.path.isfile(path):
        raise MapError(f"{where}: map file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in ("keys", "cam", "is_cam") if name not in data.files]
            if missing:
                raise MapError(f"{where}: not a map file (missing arrays: {', '.join(missing)})")
            keys, cam, is_cam = data["keys"], data["cam"], data["is_cam"]
    except MapError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise MapError(f"{where}: cannot read map file ({type(exc).__name__}: {one_line(exc)})") from None
    if keys.dtype != np.int64:
        raise MapError(f"{where}: keys must be int64, got {keys.dtype}")
    for name, array in (("cam", cam), ("is_cam", is_cam)):
        if array.dtype != MAP_DTYPE:
            raise MapError(f"{where}: {name} must be {np.dtype(MAP_DTYPE).name}, got {array.dtype}")
    _check_keys(keys, where)
    _check_shapes(keys, cam, is_cam, where)
    for name, array in (("cam", cam), ("is_cam", is_cam)):
        if not np.isfinite(array).all():
            raise MapError(f"{where}: {name} holds NaN or infinite values")
    return keys, cam, is_cam


def map_path(maps_dir: str | os.PathLike, image_id: str) -> Path:
    """Where the map file of ``image_id`` lives in ``maps_dir``."""
    return Path(maps_dir) / f"{image_id}{MAP_SUFFIX}"


def find_maps(maps_dirs: str | os.PathLike | Sequence[str | os.PathLike], image_ids: Sequence[str]) -> dict[str, Path]:
    """id → map file, looked up in one folder or in several (e.g. one per shard).

    One-line :class:`MapError` naming the first missing ids and the folder(s), an id found in more than
    one folder (stale shards), or a folder a make-cams run left incomplete (:func:`sipe.io.check_complete`).
    """
    dirs = [Path(maps_dirs)] if isinstance(maps_dirs, (str, os.PathLike)) else [Path(d) for d in maps_dirs]
    if not dirs:
        raise MapError("no map folder given")
    for folder in dirs:  # a folder a make-cams run left unfinished: none of its maps are trusted
        check_complete(folder, MapError)
    found: dict[str, Path] = {}
    missing, twice = [], []
    for image_id in image_ids:
        hits = [p for d in dirs if (p := map_path(d, image_id)).is_file()]
        if not hits:
            missing.append(image_id)
        elif len(hits) > 1:
            twice.append(image_id)
        else:
            found[image_id] = hits[0]
    folders = ", ".join(str(d) for d in dirs)
    if missing:
        raise MapError(f"{folders}: no map file for {len(missing)} of {len(image_ids)} ids: "
                       f"{first_offenders(missing)} (run make-cams first)")
    if twice:
        raise MapError(f"{folders}: map files in more than one folder for ids: {first_offenders(twice)}")
    return found


# --------------------------------------------------------------------------------------------
# Label maps

def is_cam_labels(keys, is_cam) -> np.ndarray:
    """IS-CAM label map (docs/method.md D eval_cam): ``keys[argmax over channels]`` as uint8 [H,W], no threshold.

    Ties go to the lower channel, i.e. to the background first.
    """
    keys = np.asarray(keys, dtype=np.int64)
    is_cam = np.asarray(is_cam)
    if is_cam.ndim != 3 or is_cam.shape[0] != keys.size:
        raise ValueError(f"is_cam must be [{keys.size},H,W] for {keys.size} keys, got shape {is_cam.shape}")
    return keys[np.argmax(is_cam, axis=0)].astype(np.uint8)


def cam_foreground(keys, cam) -> tuple[np.ndarray, np.ndarray]:
    """(max over the CAM rows float32 [H,W], class id of that max uint8 [H,W]); the threshold-free part
    of :func:`cam_labels`, so a threshold sweep computes it once per image."""
    keys = np.asarray(keys, dtype=np.int64)
    cam = np.asarray(cam)
    if cam.ndim != 3 or cam.shape[0] != keys.size - 1:
        raise ValueError(f"cam must be [{keys.size - 1},H,W] for {keys.size} keys, got shape {cam.shape}")
    if cam.shape[0] == 0:  # no foreground class: everything is background
        return np.full(cam.shape[1:], -np.inf, dtype=np.float32), np.zeros(cam.shape[1:], dtype=np.uint8)
    cam = cam.astype(np.float32, copy=False)
    return cam.max(axis=0), keys[1:][np.argmax(cam, axis=0)].astype(np.uint8)


def threshold_foreground(fg_max: np.ndarray, fg_label: np.ndarray, bg_threshold: float) -> np.ndarray:
    """Label map of the CAM baseline from :func:`cam_foreground`: background wherever no CAM row
    beats ``bg_threshold`` (ties go to the background, as the argmax over [threshold, CAM...] does)."""
    return np.where(fg_max > np.float32(bg_threshold), fg_label, np.uint8(0)).astype(np.uint8)


def cam_labels(keys, cam, bg_threshold: float) -> np.ndarray:
    """CAM-baseline label map (docs/method.md D ablation, IRN's eval_cam): a constant background score
    ``bg_threshold`` in front of the CAM rows, argmax, mapped through ``keys``; uint8 [H,W]."""
    fg_max, fg_label = cam_foreground(keys, cam)
    return threshold_foreground(fg_max, fg_label, bg_threshold)
