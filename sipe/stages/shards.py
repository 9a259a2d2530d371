"""Sharding of per-image stages: shard names, id selection, per-shard records and the gather check.

A shard is named ``K-of-N`` (1-based, Snakemake's ``scatteritem``) and takes ``ids[K-1::N]``. Each
shard job writes its per-image files into a shared folder plus ``shards/K-of-N.json`` listing the
ids it wrote and the run that made them (:func:`run_record`: the stage, its settings and the digests
of its inputs); the gather step verifies that the records of shards 1..N are all there, come from
one run and cover the split, that every id has its file, and writes ``index.json``
(docs/architecture.md, "Reliability rules").

Stage-level atomicity (:func:`sharded_output`): before its first per-image write a shard removes the
records of another shard count and leaves ``shards/K-of-N.running`` until its record is written. A
shard killed at any point therefore leaves a folder that the gather step and every reader
(:func:`sipe.io.check_complete`: no ``.running`` mark, an ``index.json`` of the records' run) refuse,
never a mix of two runs that one of them accepts; the previous record and index stay in place, so that
Snakemake (``update()`` outputs) sees them as incomplete and reruns the shard and the gather step.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from sipe.data.manifest import MANIFEST_NAME, DatasetManifest
from sipe.errors import SipeError, first_offenders
from sipe.io import INDEX_NAME, RUNNING_SUFFIX, SHARDS_DIR, input_digest, read_json, unfinished_shards, write_json

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


def shard_name(shard: tuple[int, int]) -> str:
    """(1, 4) → ``"2-of-4"``."""
    return f"{shard[0] + 1}-of-{shard[1]}"


def run_record(stage: str, settings: dict, **inputs: str | os.PathLike | None) -> dict:
    """What a shard's files are made with: the stage, its settings and a digest per input (SHA-1 of a file,
    of a folder's ``index.json``, ``None`` when absent). Equal for every shard of one run."""
    return {"stage": stage, "settings": settings, "inputs": {name: input_digest(path) for name, path in inputs.items()}}


def data_input(data: str | os.PathLike) -> Path:
    """The file standing for a prepared dataset in :func:`run_record`: its ``dataset.json``."""
    return Path(data) / MANIFEST_NAME


def _count(record: Path) -> int | None:
    match = _SHARD.match(record.name.split(".")[0])
    return int(match[2]) if match else None


def begin_shard(folder: Path, shard: tuple[int, int], run: dict | None = None) -> None:
    """Before a shard's first write into ``folder``: mark it unfinished (``shards/K-of-N.running``) and remove the
    records of another shard count, which no longer describe the files.

    The folder's ``index.json`` stays: removing it would leave Snakemake a missing intermediate file that it
    does not rebuild when the shard's record comes out byte for byte as before (its checksum is unchanged).
    Readers refuse the folder while a shard runs, and afterwards when the index's run is not the records'."""
    folder = Path(folder)
    shards = folder / SHARDS_DIR
    write_json(shards / f"{shard_name(shard)}{RUNNING_SUFFIX}", {"shard": shard_name(shard), "run": run})
    for stale in shards.glob("*-of-*"):
        if _count(stale) not in (None, shard[1]):
            stale.unlink(missing_ok=True)


def write_shard_record(out_dir: Path, shard: tuple[int, int], ids: list[str], run: dict | None = None) -> Path:
    """Record which ids a shard wrote and with what run: ``out_dir/shards/K-of-N.json``; the shard is then
    finished (its ``.running`` mark goes)."""
    shards = Path(out_dir) / SHARDS_DIR
    path = shards / f"{shard_name(shard)}.json"
    write_json(path, {"shard": shard_name(shard), "ids": ids, "run": run})
    (shards / f"{shard_name(shard)}{RUNNING_SUFFIX}").unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def sharded_output(folders: list[Path], shard: tuple[int, int], ids: list[str], run: dict):
    """Around a shard's per-image writes into ``folders``: :func:`begin_shard` before, each folder's record
    after (a shard that fails or is killed leaves its folders marked unfinished)."""
    for folder in folders:
        begin_shard(folder, shard, run)
    yield
    for folder in folders:
        write_shard_record(folder, shard, ids, run)


def _check_records(out_dir: Path, ids: list[str], role: str) -> dict | None:
    """The run of the finished records 1..N in ``out_dir/shards`` (``None`` without records: a folder made by
    hand); one-line :class:`SipeError` for an unfinished shard, a missing one, records of several shard
    counts or runs, or a record of other ids than the split's shard."""
    shards = out_dir / SHARDS_DIR
    running = unfinished_shards(out_dir)
    if running:
        raise SipeError(f"{out_dir}: shard {running[0]} did not finish (killed or failed): run it again "
                        "before the gather step")
    records = {p.stem: p for p in shards.glob("*-of-*.json") if _SHARD.match(p.stem)}
    if not records:
        return None
    counts = sorted({_count(p) for p in records.values()})
    if len(counts) > 1:
        raise SipeError(f"{out_dir}: shard records of {len(counts)} shard counts ({', '.join(map(str, counts))}): "
                        "run every shard of one count again")
    count = counts[0]
    missing = [f"{k}-of-{count}" for k in range(1, count + 1) if f"{k}-of-{count}" not in records]
    if missing:
        raise SipeError(f"{out_dir}: no record of shard {first_offenders(missing)}: run it first")
    runs, run = set(), None
    for k in range(count):
        path = records[shard_name((k, count))]
        record = read_json(path, "shard record")
        if not isinstance(record, dict) or record.get("ids") != shard_ids(ids, (k, count)):
            raise SipeError(f"{path}: lists other ids than shard {shard_name((k, count))} of split {role!r}: "
                            "run it again")
        run = record.get("run")
        runs.add(json.dumps(run, sort_keys=True))
    if len(runs) > 1:
        raise SipeError(f"{out_dir}: the shards were made by different runs (other settings or inputs): "
                        "run them all again")
    return run


def gather(out_dir: Path, ids: list[str], suffix: str, role: str) -> Path:
    """Check the shard records (:func:`_check_records`) and that ``out_dir/<id><suffix>`` exists for every id;
    write ``out_dir/index.json`` with the run that made the files."""
    out_dir = Path(out_dir)
    run = _check_records(out_dir, ids, role)
    missing = [i for i in ids if not (out_dir / f"{i}{suffix}").is_file()]
    if missing:
        raise SipeError(f"{out_dir}: {len(missing)} of {len(ids)} images of split {role!r} have no {suffix} file: "
                        f"{first_offenders(missing)}")
    path = out_dir / INDEX_NAME
    write_json(path, {"role": role, "suffix": suffix, "count": len(ids), "ids": ids, "run": run})
    return path


def gather_split(data: Path, out_dir: Path, suffix: str, role: str) -> Path:
    """:func:`gather` for every id of split ``role`` of the prepared dataset ``data`` (the gather-maps and
    gather-labels commands): the same modules as the shard jobs run, so the DVC stage that stands for
    both has one set of code deps (docs/architecture.md)."""
    return gather(Path(out_dir), DatasetManifest.load(data).ids(role), suffix, role)
