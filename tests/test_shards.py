"""Shard naming, id selection, the gather check and stage-level atomicity (a killed shard leaves a folder that
the gather step and every reader refuse)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from sipe.errors import SipeError
from sipe.io import check_complete
from sipe.maps import MapError, find_maps, map_path, save_maps
from sipe.stages import refine
from sipe.stages.refine import crf_labels, ir_labels
from sipe.stages.refine_eval import eval_labels
from sipe.stages.shards import (begin_shard, gather, gather_split, parse_shard, run_record, shard_ids,
                                sharded_output, write_shard_record)
from tests.cams.tiny import LABELS, TRAIN_AUG, make_dataset, masks, perfect_maps
from tests.tiny import REPO


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
    write_shard_record(tmp_path, (1, 2), ["b"])
    assert json.loads((tmp_path / "shards/1-of-2.json").read_text())["ids"] == ["a", "c"]
    with pytest.raises(SipeError, match=r"1 of 3 images of split 'train_aug' have no .npz file: c$"):
        gather(tmp_path, ids, ".npz", "train_aug")
    assert not (tmp_path / "index.json").exists()
    (tmp_path / "c.npz").write_bytes(b"x")
    index = json.loads(gather(tmp_path, ids, ".npz", "train_aug").read_text())
    assert index["count"] == 3 and index["ids"] == ids


# --- stage-level atomicity -------------------------------------------------------------------------------

class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise runs (no except, no cleanup in the stage)."""


def _complete_folder(folder: Path, ids: list[str], count: int, run: dict) -> None:
    for k in range(count):
        with sharded_output([folder], (k, count), shard_ids(ids, (k, count)), run):
            for i in shard_ids(ids, (k, count)):
                (folder / f"{i}.npz").write_text(f"{run['settings']} {i}")
    gather(folder, ids, ".npz", "train_aug")


def test_gather_refuses_unfinished_missing_and_mixed_shards(tmp_path):
    ids = ["a", "b", "c", "d", "e"]
    run_a, run_b = run_record("s", {"x": 1}), run_record("s", {"x": 2})
    _complete_folder(tmp_path, ids, 2, run_a)
    assert json.loads((tmp_path / "index.json").read_text())["run"] == run_a
    check_complete(tmp_path)
    begin_shard(tmp_path, (0, 2), run_b)  # a shard starts (then is killed): unfinished
    with pytest.raises(SipeError, match=r"shard 1-of-2 did not finish \(killed or failed\)"):
        gather(tmp_path, ids, ".npz", "train_aug")
    with pytest.raises(SipeError, match=r"shard 1-of-2 did not finish"):
        check_complete(tmp_path)
    write_shard_record(tmp_path, (0, 2), shard_ids(ids, (0, 2)), run_b)  # finished, but with other settings
    with pytest.raises(SipeError, match="made by different runs"):
        gather(tmp_path, ids, ".npz", "train_aug")
    with pytest.raises(SipeError, match=r"1-of-2.json: made by another run than .*index.json"):
        check_complete(tmp_path)  # the index of the earlier run no longer describes the files
    (tmp_path / "index.json").unlink()
    with pytest.raises(SipeError, match="no index.json: the folder is incomplete"):
        check_complete(tmp_path)
    begin_shard(tmp_path, (0, 3), run_b)  # another shard count: the records of 2 shards no longer hold
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["1-of-3.running"]
    write_shard_record(tmp_path, (0, 3), shard_ids(ids, (0, 3)), run_b)
    with pytest.raises(SipeError, match=r"no record of shard 2-of-3, 3-of-3"):
        gather(tmp_path, ids, ".npz", "train_aug")
    write_shard_record(tmp_path, (1, 3), ["a"], run_b)
    write_shard_record(tmp_path, (2, 3), shard_ids(ids, (2, 3)), run_b)
    with pytest.raises(SipeError, match=r"2-of-3.json: lists other ids than shard 2-of-3"):
        gather(tmp_path, ids, ".npz", "train_aug")


def test_folders_made_by_hand_need_no_records(tmp_path):
    for i in TRAIN_AUG:
        save_maps(map_path(tmp_path, i), *perfect_maps(masks()[i], LABELS[i]))
    check_complete(tmp_path)
    assert sorted(find_maps(tmp_path, TRAIN_AUG)) == sorted(TRAIN_AUG)
    assert json.loads(gather(tmp_path, TRAIN_AUG, ".npz", "train_aug").read_text())["run"] is None


def test_a_map_folder_with_an_unfinished_shard_is_refused(tmp_path):
    for i in TRAIN_AUG:
        save_maps(map_path(tmp_path, i), *perfect_maps(masks()[i], LABELS[i]))
    begin_shard(tmp_path, (1, 2), run_record("make-cams", {"scales": [1.0]}))
    with pytest.raises(MapError, match=r"shard 2-of-2 did not finish"):
        find_maps(tmp_path, TRAIN_AUG)


def test_a_killed_rerun_over_a_complete_folder_is_refused_by_gather_and_readers(tmp_path, monkeypatch):
    """Issue 15: a per-image stage killed halfway through a folder that holds an earlier, complete run kept the
    old index.json, and the gather step and the readers accepted a mix of files of two settings."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    make_dataset(tmp_path / "data")
    for i in TRAIN_AUG:
        save_maps(map_path(tmp_path / "maps", i), *perfect_maps(masks()[i], LABELS[i]))
    out = tmp_path / "crf"
    crf_labels(params, tmp_path / "data", tmp_path / "maps", out)  # the earlier, complete run
    assert (out / "index.json").is_file()
    eval_labels(tmp_path / "data", out, tmp_path / "eval")

    other = copy.deepcopy(params)
    other["crf"]["iterations"] = params["crf"]["iterations"] + 1  # another setting: other label maps
    real_task, done = refine._crf_task, []

    def killed_after_two(task):
        if len(done) == 2:
            raise Killed
        real_task(task)
        done.append(task)

    monkeypatch.setattr(refine, "_crf_task", killed_after_two)
    with pytest.raises(Killed):
        crf_labels(other, tmp_path / "data", tmp_path / "maps", out)
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(TRAIN_AUG)  # a mix: 2 new maps, 2 old ones
    with pytest.raises(SipeError, match=r"shard 1-of-1 did not finish"):
        gather_split(tmp_path / "data", out, ".png", "train_aug")
    with pytest.raises(SipeError, match=r"crf: shard 1-of-1 did not finish"):
        eval_labels(tmp_path / "data", out, tmp_path / "eval")
    with pytest.raises(SipeError, match=r"crf: shard 1-of-1 did not finish"):
        ir_labels(params, tmp_path / "data", tmp_path / "maps", out, tmp_path / "ir")
    monkeypatch.setattr(refine, "_crf_task", real_task)
    crf_labels(params, tmp_path / "data", tmp_path / "maps", out)  # run again: complete, the reader accepts it
    eval_labels(tmp_path / "data", out, tmp_path / "eval")
