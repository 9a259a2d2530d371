"""Atomic file output and the small file formats shared by every stage (JSON, palette PNG).

Every stage writes to a temporary sibling and renames it into place on success, so a killed
stage never leaves an output that looks complete (docs/architecture.md, "Reliability rules").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from sipe.errors import DatasetError, SipeError, one_line

IGNORE_INDEX = 255


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 RGB triples, flattened), as used by its palette PNGs."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


_PALETTE = voc_palette()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False):
    """Yield a temporary path next to ``target``; move it onto ``target`` only if the block succeeds.

    With ``directory=True`` the temporary path is an empty directory and an existing ``target``
    directory is replaced as a whole.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
    except BaseException:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(path: str | os.PathLike, obj) -> None:
    """``torch.save`` atomically, through a file handle: a path would put the temporary file's random
    name inside the archive, so equal tensors would never give equal files (DVC would see a change)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint", error: type[SipeError] = SipeError):
    """``torch.load(path, map_location="cpu", weights_only=True)``; ``error`` (one line, naming ``path``
    and ``what``) for a missing, corrupt or not weights-only file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/pickle/EOF errors, or weights_only refusing an object
        raise error(f"{path}: cannot read {what} (corrupt or not a weights-only torch file: "
                    f"{type(exc).__name__}: {one_line(exc, 160)})") from None


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_label_png(path: str | os.PathLike, label: np.ndarray) -> None:
    """Save a uint8 label map (0..C, 255 = ignore) as a VOC palette PNG, atomically."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{path}: label map must be a 2-D uint8 array, got {label.dtype} {label.shape}")
    image = Image.fromarray(label, mode="P")
    image.putpalette(_PALETTE)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG (palette or grayscale) as its raw uint8 indices, never as colours."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: label PNG must be palette (P) or grayscale (L), got mode {image.mode}")
        return np.asarray(image, dtype=np.uint8).copy()


def read_label_of_size(path: str | os.PathLike, size: tuple[int, int], image) -> np.ndarray:
    """A label PNG that must be ``size`` (H, W), the size of ``image``; one-line :class:`DatasetError` if it
    is missing, unreadable or of another size."""
    try:
        labels = read_label_png(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: label file not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read label PNG ({exc})".replace("\n", " ")) from None
    if labels.shape != tuple(size):
        raise DatasetError(f"{path}: label size {labels.shape} != image size {tuple(size)} of {image}")
    return labels


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB [H,W,3]; one-line :class:`SipeError` when it cannot be read."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise SipeError(f"{path}: image not found") from None
    except (OSError, ValueError) as exc:
        raise SipeError(f"{path}: cannot read image ({exc})") from None


def read_mask(path: Path) -> np.ndarray:
    """A GT label PNG as uint8 [H,W]; one-line :class:`SipeError` when it cannot be read."""
    try:
        return read_label_png(path)
    except FileNotFoundError:
        raise SipeError(f"{path}: mask not found") from None
    except (OSError, ValueError) as exc:
        raise SipeError(f"{path}: cannot read mask ({exc})") from None


YAML_INDENT = 2  # mapping indent of params.yaml and dvc.yaml


def round_trip_yaml():
    """A ruamel.yaml round-tripper that reproduces the formatting of ``params.yaml`` and ``dvc.yaml`` byte
    for byte (comments, quotes, flow lists, 4-space sequence indent; ``None`` written as ``null``)."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.indent(mapping=YAML_INDENT, sequence=4, offset=2)
    rt.width = 4096
    rt.preserve_quotes = True
    rt.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt
