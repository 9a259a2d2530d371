"""Shard naming, id selection and the gather check."""

from __future__ import annotations

import json

import pytest

from sipe.errors import SipeError
from sipe.stages.shards import gather, parse_shard, shard_ids, write_shard_record


def test_parse_shard():
    assert parse_shard("1-of-1") == (0, 1)
    assert parse_shard("3-of-4") == (2, 4)
    for bad in ("0-of-2", "3-of-2", "1/2", "a-of-b"):
        with pytest.raises(SipeError, match="expected K-of-N"):
            parse_shard(bad)


def test_shards_cover_every_id_exactly_once():
    ids = [f"img{i:03d}" for i in range(23)]
    for count in (1, 2, 5, 23, 30):
        parts = [shard_ids(ids, (k, count)) for k in range(count)]
        assert sorted(sum(parts, [])) == ids
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_gather_finds_missing_files_and_writes_index(tmp_path):
    ids = ["a", "b", "c"]
    for i in ids[:2]:
        (tmp_path / f"{i}.npz").write_bytes(b"x")
    write_shard_record(tmp_path, (0, 2), ["a", "c"])
    assert json.loads((tmp_path / "shards/1-of-2.json").read_text())["ids"] == ["a", "c"]
    with pytest.raises(SipeError, match=r"1 of 3 images of split 'train_aug' have no .npz file: c$"):
        gather(tmp_path, ids, ".npz", "train_aug")
    assert not (tmp_path / "index.json").exists()
    (tmp_path / "c.npz").write_bytes(b"x")
    index = json.loads(gather(tmp_path, ids, ".npz", "train_aug").read_text())
    assert index["count"] == 3 and index["ids"] == ids
