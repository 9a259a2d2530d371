"""Sharding of per-image stages: shard names, id selection, per-shard records and the gather check.

A shard is named ``K-of-N`` (1-based, Snakemake's ``scatteritem``) and takes ``ids[K-1::N]``. Each
shard job writes its per-image files into a shared folder plus ``shards/K-of-N.json`` listing the
ids it wrote; the gather step verifies that every id of the list has its file and writes
``index.json`` (docs/architecture.md, "Reliability rules").
"""

from __future__ import annotations

import re
from pathlib import Path

from sipe.data.manifest import DatasetManifest
from sipe.errors import SipeError, first_offenders
from sipe.io import write_json

_SHARD = re.compile(r"^(\d+)-of-(\d+)$")


def parse_shard(name: str) -> tuple[int, int]:
    """``"2-of-4"`` → (1, 4): zero-based shard index and shard count."""
    match = _SHARD.match(name)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise SipeError(f"--shard {name!r}: expected K-of-N with 1 <= K <= N, e.g. 1-of-4")
    return int(match[1]) - 1, int(match[2])


def shard_ids(ids: list[str], shard: tuple[int, int]) -> list[str]:
    """The ids of shard (index, count), zero-based: ``ids[index::count]`` (stable, disjoint, complete)."""
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise SipeError(f"shard must be a pair (index, count), got {shard!r}") from None
    if count < 1 or not 0 <= index < count:
        raise SipeError(f"shard {index} of {count}: need count >= 1 and 0 <= index < count")
    return list(ids)[index::count]


def write_shard_record(out_dir: Path, shard: tuple[int, int], ids: list[str]) -> Path:
    """Record which ids a shard wrote: ``out_dir/shards/K-of-N.json``."""
    path = out_dir / "shards" / f"{shard[0] + 1}-of-{shard[1]}.json"
    write_json(path, {"shard": f"{shard[0] + 1}-of-{shard[1]}", "ids": ids})
    return path


def gather(out_dir: Path, ids: list[str], suffix: str, role: str) -> Path:
    """Check that ``out_dir/<id><suffix>`` exists for every id; write ``out_dir/index.json``."""
    missing = [i for i in ids if not (out_dir / f"{i}{suffix}").is_file()]
    if missing:
        raise SipeError(f"{out_dir}: {len(missing)} of {len(ids)} images of split {role!r} have no {suffix} file: "
                        f"{first_offenders(missing)}")
    path = out_dir / "index.json"
    write_json(path, {"role": role, "suffix": suffix, "count": len(ids), "ids": ids})
    return path


def gather_split(data: Path, out_dir: Path, suffix: str, role: str) -> Path:
    """:func:`gather` for every id of split ``role`` of the prepared dataset ``data`` (the gather-maps and
    gather-labels commands): the same modules as the shard jobs run, so the DVC stage that stands for
    both has one set of code deps (docs/architecture.md)."""
    return gather(Path(out_dir), DatasetManifest.load(data).ids(role), suffix, role)
