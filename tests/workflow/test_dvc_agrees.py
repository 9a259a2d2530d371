"""dvc.yaml mirrors the Snakemake DAG (docs/architecture.md, "One source of truth for the DAG").

Snakemake is the source of truth. After a real run, ``snakemake --detailed-summary`` lists, for
every output, its rule, inputs and shell command. Each Snakemake job must belong to exactly one DVC
stage (templating resolved by DVC itself) that declares its outputs, covers its inputs and runs the
same command up to ``--workers``, ``--shard`` and ``--log``, which only Snakemake varies; gather rules
of sharded stages are absorbed by the unsharded DVC stage. Every DVC stage must have a job.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path

from tests.conftest import run

# Snakemake gather rules whose work the unsharded DVC stage does itself.
ABSORBED = {"gather_cams": "make_cams", "gather_segment": "segment", "gather_crf": "crf",
            "gather_ir_labels": "ir_labels", "gather_pseudo_labels": "pseudo_labels"}


def _normalise(cmd: str) -> str:
    return " ".join(re.sub(r"--(workers|shard|log) \S+", "", cmd).split())


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


def test_every_snakemake_job_is_a_dvc_stage_with_the_same_command_and_files(snakemake_run: Path):
    jobs = _snakemake_jobs(snakemake_run)
    stages = _dvc_stages(snakemake_run)
    produced: dict[str, set[str]] = defaultdict(set)
    for job in jobs:
        owners = [name for name, s in stages.items() if all(_covered(o, s["outs"]) for o in job["outputs"])]
        assert len(owners) == 1, f"rule {job['rule']}: outputs {sorted(job['outputs'])} belong to DVC stages {owners}"
        name = owners[0]
        stage = stages[name]
        produced[name] |= job["outputs"]
        assert name.split("@")[0] == ABSORBED.get(job["rule"], job["rule"]), f"rule {job['rule']} is in stage {name}"
        if job["rule"] not in ABSORBED:
            assert _normalise(stage["cmd"]) == _normalise(job["cmd"]), f"stage {name}: command differs"
        for path in job["inputs"]:
            assert _covered(path, stage["deps"] + stage["outs"]), f"stage {name}: Snakemake input {path} is not a DVC dep"
    assert set(produced) == set(stages), f"DVC stages without a Snakemake job: {sorted(set(stages) - set(produced))}"
    for name, stage in stages.items():
        for out in stage["outs"]:
            assert any(_covered(o, [out]) for o in produced[name]), f"stage {name}: no Snakemake rule writes {out}"
        for dep in stage["deps"]:
            assert (snakemake_run / dep).exists(), f"stage {name}: DVC dep {dep} does not exist"
