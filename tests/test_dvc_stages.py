"""dvc.yaml from Snakemake jobs (sipe/dvc_stages.py): grouping, sharded commands, params, and the shape guard."""

from __future__ import annotations

import pytest
import yaml

from sipe.dvc_stages import JobRecord, check_shape, dvc_stages, render, shape_of
from sipe.errors import SipeError

CODE = ["sipe/__init__.py", "sipe/stages/cams.py"]


def _shard(k: int) -> JobRecord:
    return JobRecord(rule="make_cams", wildcards={"variant": "sipe", "scatteritem": f"{k}-of-2"},
                     inputs=["data/s", "results/s/sipe/model.pt", *CODE],
                     outputs=[f"results/s/sipe/cams/shards/{k}-of-2.json"],
                     cmd=f"python -m sipe make-cams --params params.yaml --data data/s --model results/s/sipe/model.pt "
                         f"--out results/s/sipe/cams --shard {k}-of-2 --workers 1 --log logs/s/make_cams_sipe_{k}-of-2.log",
                     params=["cams.scales"], order=1)


JOBS = [
    JobRecord(rule="train_sipe", wildcards={"variant": "sipe"}, inputs=["data/s", *CODE],
              outputs=["results/s/sipe/model.pt", "results/s/sipe/train/steps.csv"],
              cmd="python -m sipe train-sipe --params params.yaml --data data/s --out results/s/sipe --workers 8",
              params=["sipe"], plots={"results/s/sipe/train/steps.csv": {"x": "step", "y": "loss"}}, order=0,
              desc="Train the classifier.\nMore words."),
    _shard(2), _shard(1),  # Snakemake's order is not the file's
    JobRecord(rule="gather_cams", wildcards={"variant": "sipe"},
              inputs=["data/s", "results/s/sipe/cams/shards/1-of-2.json", "results/s/sipe/cams/shards/2-of-2.json"],
              outputs=["results/s/sipe/cams/index.json"], cmd="python -m sipe gather-maps --maps results/s/sipe/cams",
              order=2),
    JobRecord(rule="eval_cams", wildcards={"variant": "sipe"}, inputs=["data/s", "results/s/sipe/cams/index.json"],
              outputs=["results/s/sipe/eval/summary.json", "results/s/metrics.json"],
              cmd="python -m sipe eval-cams --maps results/s/sipe/cams", params=["eval_cams"],
              metrics=["results/s/metrics.json"], order=3),
]


def test_one_stage_per_rule_and_wildcard_with_the_sharded_rule_and_its_gather_as_one():
    stages = dvc_stages(JOBS)
    assert list(stages) == ["train_sipe-sipe", "make_cams-sipe", "eval_cams-sipe"]
    cams = stages["make_cams-sipe"]
    shard = ("python -m sipe make-cams --params params.yaml --data data/s --model results/s/sipe/model.pt "
             "--out results/s/sipe/cams --shard {k}-of-2 --log logs/s/make_cams_sipe_{k}-of-2.log")
    assert cams["cmd"] == [shard.format(k=1), shard.format(k=2),  # the shards in order, then the gather check
                           "python -m sipe gather-maps --maps results/s/sipe/cams"]
    assert cams["outs"] == ["results/s/sipe/cams"] and cams["params"] == ["cams.scales"]
    assert cams["deps"] == ["data/s", "results/s/sipe/model.pt", *CODE]  # the shard records are its own
    assert stages["eval_cams-sipe"]["deps"] == ["data/s", "results/s/sipe/cams"]  # index.json → its folder


def test_stages_read_the_prepared_dataset_through_its_content_digest():
    prepare = JobRecord(rule="prepare_data", wildcards={}, inputs=["sipe/stages/data.py"], outputs=["data/s"],
                        cmd="python -m sipe prepare-data --out data/s", order=-1)
    stages = dvc_stages([prepare, *JOBS])
    assert stages["prepare_data"]["outs"] == ["data/s"]  # DVC hashes the folder once, for this stage
    assert stages["train_sipe-sipe"]["deps"] == ["data/s/content.json", *CODE]
    assert stages["eval_cams-sipe"]["deps"] == ["data/s/content.json", "results/s/sipe/cams"]


def test_outputs_marked_as_metrics_and_plots_and_the_rest():
    stages = dvc_stages(JOBS)
    train = stages["train_sipe-sipe"]
    assert train["cmd"].endswith("--out results/s/sipe") and "--workers" not in train["cmd"]
    assert train["outs"] == ["results/s/sipe/model.pt"]
    assert train["plots"] == [{"results/s/sipe/train/steps.csv": {"x": "step", "y": "loss"}}]
    assert train["desc"] == "Train the classifier."
    assert stages["eval_cams-sipe"]["metrics"] == ["results/s/metrics.json"]
    assert stages["eval_cams-sipe"]["outs"] == ["results/s/sipe/eval/summary.json"]


def test_the_rendered_file_is_what_dvc_reads():
    shape = {"dataset": "s", "sipe.weights": "pretrain"}
    document = yaml.safe_load(render(dvc_stages(JOBS), shape))
    assert document["vars"] == [{"generated_for": shape}]
    folded = document["stages"]["make_cams-sipe"]["cmd"]  # long commands are folded at options
    assert [" ".join(cmd.split()) for cmd in folded] == dvc_stages(JOBS)["make_cams-sipe"]["cmd"]


def test_shape_of_reads_the_dotted_keys():
    params = {"dataset": "voc", "sipe": {"weights": "imagenet", "variants": ["sipe"]}, "voc": {"root": "r"}}
    assert shape_of(params) == {"dataset": "voc", "sipe.variants": ["sipe"], "sipe.weights": "imagenet",
                                "voc.root": "r"}


def test_a_stage_run_by_dvc_for_another_shape_stops_with_one_line(tmp_path, monkeypatch):
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(render({}, {"dataset": "synthetic", "sipe.weights": "pretrain"}))
    params = {"dataset": "synthetic", "sipe": {"weights": "imagenet"}}
    check_shape(params, dvc_yaml)  # not under DVC: nothing to check
    monkeypatch.setenv("DVC_STAGE", "train_sipe-sipe")
    with pytest.raises(SipeError, match=r"generated for sipe.weights='pretrain' but params.yaml says 'imagenet'"):
        check_shape(params, dvc_yaml)
    check_shape({"dataset": "synthetic", "sipe": {"weights": "pretrain"}}, dvc_yaml)
