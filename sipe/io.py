"""Atomic file output and the small file formats shared by every stage (JSON, YAML, palette PNG, torch files).

Every stage writes to a temporary sibling and renames it into place on success, so a killed
stage never leaves an output that looks complete (docs/architecture.md, "Reliability rules");
an :class:`OSError` while writing (disk full, read-only folder) names the output or its folder.
The readers (:func:`read_text_file`, :func:`read_json`, :func:`read_yaml`, :func:`read_torch_file`)
turn bytes that are not UTF-8, malformed JSON or YAML, a duplicate YAML key and NaN or infinite
numbers into one-line errors naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import functools
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
    _make_folder(target.parent)
    try:
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:  # e.g. a read-only folder: name the folder, not the random temporary name
        raise type(exc)(exc.errno, exc.strerror, str(target.parent)) from None
    try:
        yield tmp
        if directory:
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
    except BaseException as exc:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and _names(exc, None, tmp):
            # A failed write (ENOSPC) names no file, a failed rename the temporary one: name the output.
            exc.filename, exc.filename2 = str(target), None
        raise


# A folder written by a sharded stage (sipe/stages/shards.py): per-image files, shards/K-of-N.json per finished
# shard, shards/K-of-N.running while a shard writes, and index.json once the gather step found it complete.
INDEX_NAME = "index.json"
SHARDS_DIR = "shards"
RUNNING_SUFFIX = ".running"


def file_digest(path: str | os.PathLike) -> str | None:
    """SHA-1 of the bytes of ``path``; ``None`` when there is no such file."""
    import hashlib

    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_digest(path: str | os.PathLike | None) -> str | None:
    """What a stage's output depends on in ``path``: SHA-1 of a file, of a folder's ``index.json`` (a sharded
    stage's output, whose index names the run that made it); ``None`` for no path or nothing there."""
    if path is None:
        return None
    path = Path(path)
    return file_digest(path / INDEX_NAME if path.is_dir() else path)


def unfinished_shards(folder: str | os.PathLike) -> list[str]:
    """The shards (``K-of-N``) of a sharded stage's ``folder`` that started and did not finish, sorted."""
    shards = Path(folder) / SHARDS_DIR
    return sorted(p.name[: -len(RUNNING_SUFFIX)] for p in shards.glob(f"*{RUNNING_SUFFIX}"))


def check_complete(folder: str | os.PathLike, error: type[SipeError] = SipeError) -> None:
    """Refuse (one line naming ``folder``) a folder that a sharded stage left incomplete: a shard that did not
    finish (``shards/*.running``), no ``index.json``, or shard records made by another run (settings, inputs)
    than the index says (a shard ran again after the gather step). A folder without ``shards/`` (made by hand)
    passes."""
    folder = Path(folder)
    shards = folder / SHARDS_DIR
    if not shards.is_dir():
        return
    running = unfinished_shards(folder)
    if running:
        raise error(f"{folder}: shard {running[0]} did not finish (killed or failed): the folder is incomplete, "
                    "run its stage again")
    index = folder / INDEX_NAME
    if not index.is_file():
        raise error(f"{folder}: no {INDEX_NAME}: the folder is incomplete (run its stage again, then the gather step)")
    run = _entry(read_json(index, "index", error), "run")
    for record in sorted(shards.glob("*.json")):
        if _entry(read_json(record, "shard record", error), "run") != run:
            raise error(f"{record}: made by another run than {index} (other settings or inputs): run the gather "
                        "step, or the stage again")


def _entry(document, key: str):
    """``document[key]`` of a JSON object; ``None`` for another document or a missing key."""
    return document.get(key) if isinstance(document, dict) else None


def _names(exc: OSError, *paths) -> bool:
    """Whether ``exc.filename`` is one of ``paths`` (``None`` included)."""
    name = exc.filename
    if isinstance(name, (str, os.PathLike)):
        name = os.fspath(name)
    return name in [p if p is None else os.fspath(p) for p in paths]


def _make_folder(folder: Path) -> None:
    """``folder.mkdir(parents=True, exist_ok=True)``; a file in the way is an :class:`OSError` naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file (or a file among the parents) where a folder must be
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", exc.filename or str(folder)) from None


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


def read_text_file(path: str | os.PathLike, what: str = "file", error: type[SipeError] = SipeError) -> str:
    """The UTF-8 text of ``path``; ``error`` naming ``path`` and ``what`` for bytes that are not UTF-8.

    :class:`OSError` (missing, unreadable, a folder) is left to the caller: it names the file and
    ``sipe`` reports it as one line.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def read_json(path: str | os.PathLike, what: str = "JSON file", error: type[SipeError] = SipeError):
    """The JSON document in ``path`` (UTF-8); ``error`` naming ``path`` and ``what`` for text that is not
    UTF-8 or not JSON, or holds ``NaN``/``Infinity``. :class:`OSError` is left to the caller."""
    text = read_text_file(path, what, error)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # _refuse_constant
        raise error(f"{path}: {exc} ({what})") from None


@functools.cache
def yaml_loader():
    """A ``yaml.SafeLoader`` subclass that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may repeat keys on purpose
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:  # an unhashable key: SafeLoader reports it
                        continue
                    if duplicate:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark, f"duplicate key {key!r}",
                            key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | os.PathLike, what: str = "YAML file", error: type[SipeError] = SipeError):
    """The YAML document in ``path`` (UTF-8, safe types only); ``error`` naming ``path`` and ``what`` for
    text that is not UTF-8 or not YAML, or a mapping with a duplicate key. :class:`OSError` is left to
    the caller."""
    import yaml

    text = read_text_file(path, what, error)
    try:
        return yaml.load(text, Loader=yaml_loader())  # a SafeLoader subclass: safe types only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", "") or ""
        if problem.startswith("duplicate key"):
            raise error(f"{path}: {problem}{where}") from None
        raise error(f"{path}: not valid YAML{where}") from None


def non_finite_tensor(obj, prefix: str = "") -> str | None:
    """The name (dotted path of keys and indices) of the first floating tensor in ``obj`` (nested dicts,
    lists, tuples) holding NaN or an infinity; ``None`` when every one is finite."""
    import torch

    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            return prefix or "(the tensor)"
        return None
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = non_finite_tensor(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint", error: type[SipeError] = SipeError):
    """``torch.load(path, map_location="cpu", weights_only=True)``; ``error`` (one line, naming ``path``
    and ``what``) for a missing, corrupt or not weights-only file, or a floating tensor holding NaN or an
    infinity (named by its keys, e.g. ``model.conv1.weight``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/pickle/EOF errors, or weights_only refusing an object
        raise error(f"{path}: cannot read {what} (corrupt or not a weights-only torch file: "
                    f"{type(exc).__name__}: {one_line(exc, 160)})") from None
    bad = non_finite_tensor(contents)
    if bad is not None:
        raise error(f"{path}: {what} tensor {bad} holds NaN or infinite values")
    return contents


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
