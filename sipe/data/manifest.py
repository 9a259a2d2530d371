"""The prepared-dataset manifest (``dataset.json``): the one description every later stage reads.

A prepared dataset is a folder in VOC 2012 layout plus ``dataset.json``::

    {"name": "synthetic",
     "classes": ["background", "aeroplane", ...],          # index 0 = background
     "labels": "cls_labels.json",                          # id -> sorted class indices 1..C
     "splits": {"train_aug": {"list": "ImageSets/Segmentation/train_aug.txt",
                              "images": "JPEGImages", "masks": "SegmentationClassAug"},
                "train": {...}, "val": {...}},
     "image_ext": ".jpg", "mask_ext": ".png"}

Paths are relative to the folder holding ``dataset.json`` (they may lead outside it, e.g. to the
JPEGImages of a VOC root that is never copied). Split roles: ``train_aug`` trains every network,
``train`` is where localisation maps and pseudo labels are scored (docs/method.md D, F.5), ``val`` is where
DeepLab is scored (docs/method.md G.3). A split may have ``"masks": null`` (VOC test).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sipe.errors import DatasetError, first_offenders

MANIFEST_NAME = "dataset.json"
# Written last by prepare-data: a digest of every other file. DVC stages depend on it instead of the whole
# folder (sipe/dvc_stages.py), so `dvc status` walks the dataset once, not once per stage.
CONTENT_NAME = "content.json"
SPLIT_ROLES = ("train_aug", "train", "val")


@dataclass(frozen=True)
class Split:
    """One id list with the folders its images and (optional) masks live in."""

    list_file: Path
    image_dir: Path
    mask_dir: Path | None


def bad_id_reason(image_id: str) -> str | None:
    """Why ``image_id`` is not a safe file stem (``None`` when it is)."""
    if not image_id:
        return "empty id"
    if image_id != image_id.strip() or any(ch.isspace() for ch in image_id):
        return "whitespace in id"
    if "/" in image_id or "\\" in image_id:
        return "path separator in id"
    if image_id in (".", "..") or ".." in image_id:
        return "'..' in id"
    if os.path.isabs(image_id):
        return "absolute path"
    return None


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Read an id list (one id per line; VOC-style ``/JPEGImages/x.jpg ...`` lines keep the stem).

    Raises :class:`DatasetError` for a missing or empty list, bytes that are not UTF-8, duplicates and unsafe ids.
    """
    from sipe.io import read_text_file

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: id list not found")
    ids = []
    for line in read_text_file(path, "id list", DatasetError).splitlines():
        if not line.strip():
            continue
        token = line.split()[0]
        if token.startswith("/JPEGImages/"):  # SIPE/SBD list style: "/JPEGImages/<id>.jpg /Seg.../<id>.png"
            token = Path(token).stem
        ids.append(token)
    if not ids:
        raise DatasetError(f"{path}: id list is empty")
    bad = [f"{i!r} ({reason})" for i in ids if (reason := bad_id_reason(i))]
    if bad:
        raise DatasetError(f"{path}: invalid ids: {first_offenders(bad)}")
    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        raise DatasetError(f"{path}: duplicate ids: {first_offenders(dups)}")
    return ids


@dataclass(frozen=True)
class DatasetManifest:
    """A prepared dataset: class names, splits and the image-level labels file."""

    root: Path
    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    labels_file: Path
    image_ext: str = ".jpg"
    mask_ext: str = ".png"

    @property
    def num_classes(self) -> int:
        """Number of classes including background (VOC 21, COCO 81)."""
        return len(self.classes)

    def split(self, role: str) -> Split:
        if role not in self.splits:
            raise DatasetError(f"{self.root / MANIFEST_NAME}: no split {role!r} (has: {', '.join(self.splits)})")
        return self.splits[role]

    def ids(self, role: str) -> list[str]:
        return read_id_list(self.split(role).list_file)

    def image_path(self, role: str, image_id: str) -> Path:
        return self.split(role).image_dir / f"{image_id}{self.image_ext}"

    def mask_path(self, role: str, image_id: str) -> Path:
        mask_dir = self.split(role).mask_dir
        if mask_dir is None:
            raise DatasetError(f"{self.root / MANIFEST_NAME}: split {role!r} has no masks")
        return mask_dir / f"{image_id}{self.mask_ext}"

    def class_labels(self) -> dict[str, tuple[int, ...]]:
        """Image-level labels: id -> sorted foreground class indices (1..C), docs/method.md A.2/A.3.

        One-line :class:`DatasetError` naming the file (and the first bad id) unless the file is a JSON
        object mapping ids to lists of integer class indices in 1..C."""
        from sipe.io import read_json

        path = self.labels_file
        try:
            raw = read_json(path, "class labels file", DatasetError)
        except FileNotFoundError:
            raise DatasetError(f"{path}: class labels file not found") from None
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read class labels ({exc.strerror})") from None
        if not isinstance(raw, dict):
            raise DatasetError(f"{path}: must be a JSON object mapping image ids to class index lists, "
                               f"got {_json_type(raw)}")
        top = self.num_classes - 1
        bad = [k for k, v in raw.items() if not (isinstance(v, list) and all(_is_int(c) and 1 <= c <= top for c in v))]
        if bad:
            raise DatasetError(f"{path}: {bad[0]}: labels must be lists of class indices 1..{top}, got "
                               f"{json.dumps(raw[bad[0]])[:60]}" + (f" (and {len(bad) - 1} more bad entries)"
                                                                  if len(bad) > 1 else ""))
        return {k: tuple(sorted(v)) for k, v in raw.items()}

    def to_json(self) -> dict:
        def rel(p: Path | None):
            return None if p is None else os.path.relpath(p, self.root)

        return {
            "name": self.name,
            "classes": list(self.classes),
            "labels": rel(self.labels_file),
            "splits": {role: {"list": rel(s.list_file), "images": rel(s.image_dir), "masks": rel(s.mask_dir)}
                       for role, s in self.splits.items()},
            "image_ext": self.image_ext,
            "mask_ext": self.mask_ext,
        }

    def write(self) -> None:
        """Write ``dataset.json`` into :attr:`root` (atomically)."""
        from sipe.io import write_json

        write_json(self.root / MANIFEST_NAME, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> DatasetManifest:
        """Load ``dataset.json`` (``path`` may be the file or its folder).

        One-line :class:`DatasetError` naming the file (and the key) for a missing file, text that is
        not UTF-8 JSON, or a key that is missing or of the wrong type (:func:`check_manifest`)."""
        from sipe.io import read_json

        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        try:
            raw = read_json(path, "dataset manifest", DatasetError)
        except FileNotFoundError:
            raise DatasetError(f"{path}: dataset manifest not found (run the prepare-data stage first)") from None
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read dataset manifest ({exc.strerror})") from None
        check_manifest(raw, path)
        root = path.parent

        def resolve(p):
            return None if p is None else (root / p)

        splits = {role: Split(resolve(s["list"]), resolve(s["images"]), resolve(s["masks"]))
                  for role, s in raw["splits"].items()}
        return cls(root=root, name=raw["name"], classes=tuple(raw["classes"]), splits=splits,
                   labels_file=resolve(raw["labels"]), image_ext=raw.get("image_ext", ".jpg"),
                   mask_ext=raw.get("mask_ext", ".png"))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value) -> str:
    """The JSON name of a decoded value's type (object, array, string, number, boolean, null)."""
    for kind, name in ((dict, "object"), (list, "array"), (str, "string"), (bool, "boolean"),
                       ((int, float), "number"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _nonempty_string(value) -> bool:
    return isinstance(value, str) and value != ""


def _extension(value) -> bool:
    return isinstance(value, str) and value.startswith(".") and len(value) > 1 and "/" not in value


# The keys of dataset.json: (required, check, what the value must be).
_MANIFEST_KEYS = {
    "name": (True, _nonempty_string, "a non-empty string"),
    "classes": (True, lambda v: isinstance(v, list) and len(v) >= 2 and all(_nonempty_string(c) for c in v),
                "a list of at least two class names (background first), each a non-empty string"),
    "labels": (True, _nonempty_string, "the path of the class labels file (a non-empty string)"),
    "splits": (True, lambda v: isinstance(v, dict) and len(v) > 0, "an object mapping split names to splits"),
    "image_ext": (False, _extension, "a file extension such as \".jpg\""),
    "mask_ext": (False, _extension, "a file extension such as \".png\""),
}
_SPLIT_KEYS = {
    "list": (True, _nonempty_string, "the path of the id list (a non-empty string)"),
    "images": (True, _nonempty_string, "the path of the image folder (a non-empty string)"),
    "masks": (True, lambda v: v is None or _nonempty_string(v), "the path of the mask folder or null"),
}


def _check_keys(raw: dict, keys: dict, path: Path, prefix: str = "") -> None:
    for key, (required, check, must) in keys.items():
        if key not in raw:
            if required:
                raise DatasetError(f"{path}: missing key {prefix}{key}")
            continue
        if not check(raw[key]):
            value = json.dumps(raw[key]) if not isinstance(raw[key], (dict, list)) else _json_type(raw[key])
            raise DatasetError(f"{path}: {prefix}{key}: must be {must}, got {value[:60]}")


def write_content_digest(root: str | os.PathLike) -> dict:
    """Write ``root/content.json``: the number of files, their bytes and a sha256 over every file's relative
    path and contents (sorted), all files of the prepared dataset but this one. Same files, same digest."""
    import hashlib

    from sipe.io import write_json

    root = Path(root)
    digest, files, size = hashlib.sha256(), 0, 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != CONTENT_NAME):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        digest.update(b"\0")
        files += 1
    content = {"files": files, "bytes": size, "sha256": digest.hexdigest()}
    write_json(root / CONTENT_NAME, content)
    return content


def check_manifest(raw, path: Path) -> None:
    """The structure of a decoded ``dataset.json``: every key present with a value of the right type;
    one-line :class:`DatasetError` naming ``path`` and the first bad key (``splits.val.masks``)."""
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: must be a JSON object (a dataset manifest), got {_json_type(raw)}")
    _check_keys(raw, _MANIFEST_KEYS, path)
    for role, split in raw["splits"].items():
        if not isinstance(split, dict):
            raise DatasetError(f"{path}: splits.{role}: must be an object with list, images and masks, "
                               f"got {_json_type(split)}")
        _check_keys(split, _SPLIT_KEYS, path, f"splits.{role}.")
