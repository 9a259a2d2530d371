"""The raw dataset that preparation reads, as an input of the pipeline (docs/datasets.md, "Raw data as an input").

The raw folders (VOC 2012 and SBD, or COCO 2014) are inputs of the ``prepare_data`` rule, hence DVC deps of
its stage, which hashes their content. Snakemake sees only a folder's own date, which does not change when a
file deep inside it is rewritten, so the rule also takes :func:`tree_digest` as a param: a digest of every
file's path, size and date under the folders (one walk, no file read), and a changed, added or removed raw
file reruns preparation and everything after it in both tools.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# params.yaml `dataset` → the keys of its section that name raw folders (the synthetic dataset has none).
RAW_FOLDERS = {"voc": ("root", "sbd_root"), "coco": ("root",)}


def raw_folders(params: dict) -> list[str]:
    """The raw folders the configured dataset is prepared from, as params.yaml names them."""
    dataset = params["dataset"]
    return [str(params[dataset][key]) for key in RAW_FOLDERS.get(dataset, ())]


def tree_digest(folders: list[str]) -> str:
    """A digest of the relative path, size and modification time of every file under ``folders`` (sorted walk;
    a missing folder counts as empty)."""
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(f"{folder}\0".encode())
        for parent, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = Path(parent, name)
                stat = path.stat()
                digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]
