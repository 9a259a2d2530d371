"""dvc.yaml mirrors the Snakemake DAG (docs/architecture.md, "One state, two tools").

``sipe dvc-yaml`` generates dvc.yaml from Snakemake's DAG object; these tests check the result through
the tools' public interfaces instead. ``snakemake --detailed-summary`` lists, for every output, its
rule, inputs and shell command. Each Snakemake job must belong to exactly one DVC stage (as DVC itself
parses dvc.yaml) that declares its outputs, covers its inputs and runs the same command up to
``--workers``, which Snakemake sets from the job's threads; the gather job of a sharded rule belongs
to that rule's stage, which runs every shard and then the gather command. Every DVC stage must have a
job.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_repo, run

# Snakemake gather rules, run by the DVC stage of the rule whose shards they check.
ABSORBED = {"gather_cams": "make_cams", "gather_segment": "segment", "gather_crf": "crf",
            "gather_ir_labels": "ir_labels", "gather_pseudo_labels": "pseudo_labels"}


def _normalise(cmd: str) -> str:
    return " ".join(re.sub(r"--workers \S+", "", cmd).split())


def _covered(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def _snakemake_jobs(repo: Path) -> list[dict]:
    proc = run(["snakemake", "--detailed-summary"], cwd=repo)
    table = proc.stdout[proc.stdout.index("output_file"):]
    jobs: dict[tuple[str, str], dict] = defaultdict(lambda: {"outputs": set(), "inputs": set()})
    for row in csv.DictReader(io.StringIO(table), delimiter="\t"):
        job = jobs[(row["rule"], row["shellcmd"])]
        job.update(rule=row["rule"], cmd=row["shellcmd"])
        job["outputs"].add(row["output_file"])
        job["inputs"].update(i.strip() for i in row["input-file(s)"].split(",") if i.strip() not in ("", "-"))
    return [job for job in jobs.values() if job["rule"] != "all"]


def _dvc_stages(repo: Path) -> dict[str, dict]:
    """Stages of dvc.yaml with ``${...}`` and ``foreach`` resolved, via DVC's own parser."""
    script = (
        "import json, sys\n"
        "from dvc.dependency.param import ParamsDependency\n"
        "from dvc.repo import Repo\n"
        "stages = {s.name: {'cmd': s.cmd, 'outs': [o.def_path for o in s.outs],\n"
        "                   'deps': [d.def_path for d in s.deps if not isinstance(d, ParamsDependency)]}\n"
        "          for s in Repo('.').index.stages}\n"
        "json.dump(stages, sys.stdout)\n"
    )
    return json.loads(run(["python", "-c", script], cwd=repo).stdout)


def assert_dvc_agrees(repo: Path, ran: bool = True) -> dict[str, dict]:
    """Snakemake's jobs in ``repo`` and DVC's stages are the same (see the module docstring); ``ran``: the DAG
    has run, so every DVC dep exists. Returns the DVC stages."""
    jobs = _snakemake_jobs(repo)
    stages = _dvc_stages(repo)
    produced: dict[str, set[str]] = defaultdict(set)
    for job in jobs:
        owners = [name for name, s in stages.items() if all(_covered(o, s["outs"]) for o in job["outputs"])]
        assert len(owners) == 1, f"rule {job['rule']}: outputs {sorted(job['outputs'])} belong to DVC stages {owners}"
        name = owners[0]
        stage = stages[name]
        produced[name] |= job["outputs"]
        assert name.split("-")[0] == ABSORBED.get(job["rule"], job["rule"]), f"rule {job['rule']} is in stage {name}"
        commands = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
        assert _normalise(job["cmd"]) in map(_normalise, commands), f"stage {name}: runs no command of {job['rule']}"
        for path in job["inputs"]:
            # DVC reads the prepared dataset (data/<dataset>) through its content digest (sipe/dvc_stages.py)
            dep = f"{path}/content.json" if re.fullmatch(r"data/[^/]+", path) and job["rule"] != "prepare_data" else path
            assert _covered(dep, stage["deps"] + stage["outs"]), f"stage {name}: Snakemake input {path} is not a DVC dep"
    assert set(produced) == set(stages), f"DVC stages without a Snakemake job: {sorted(set(stages) - set(produced))}"
    for name, stage in stages.items():
        for out in stage["outs"]:
            assert any(_covered(o, [out]) for o in produced[name]), f"stage {name}: no Snakemake rule writes {out}"
        for dep in stage["deps"] if ran else []:
            assert (repo / dep).exists(), f"stage {name}: DVC dep {dep} does not exist"
    return stages


def test_every_snakemake_job_is_a_dvc_stage_with_the_same_command_and_files(snakemake_run: Path):
    assert_dvc_agrees(snakemake_run)


def test_dvc_yaml_is_the_one_generated_from_the_workflow():
    proc = run(["python", "-m", "sipe", "dvc-yaml", "--check"], cwd=REPO, check=False)
    assert proc.returncode == 0, "dvc.yaml is stale: run `sipe dvc-yaml`\n" + proc.stderr


@pytest.mark.slow
def test_imagenet_weights_drop_the_pretrain_stage_in_both_tools(tmp_path, monkeypatch):
    """sipe.weights and deeplab.weights "imagenet": no pre-training in Snakemake's DAG nor in dvc.yaml, and after a
    real run the two still agree job for stage."""
    import torch
    import torchvision

    from sipe.models.backbone import imagenet_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = imagenet_weights_file("resnet18")  # a random torchvision ResNet-18 in ImageNet's place
    weights.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    before = _dvc_stages(copy_repo(tmp_path / "default"))
    repo = copy_repo(tmp_path / "imagenet", sipe={"weights": "imagenet"}, deeplab={"weights": "imagenet"})
    run(["snakemake", "--cores", "2"], cwd=repo)
    stages = assert_dvc_agrees(repo)
    assert "pretrain_backbone" in before and "pretrain_backbone" not in stages
    assert set(stages) == set(before) - {"pretrain_backbone"}
    assert "--init" in before["train_sipe-sipe"]["cmd"] and "--init" not in stages["train_sipe-sipe"]["cmd"]
