"""dvc.yaml mirrors the Snakemake DAG (docs/architecture.md, "One source of truth for the DAG").

Snakemake is the source of truth. After a real run, ``snakemake --detailed-summary`` lists, for
every output, the rule, its inputs and its shell command; each DVC stage (templating resolved by
``dvc``) must have the same command, cover the same inputs and declare the same outputs.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from tests.conftest import run


def _normalise(cmd: str) -> str:
    """A command without ``--workers N`` (Snakemake's threads; DVC uses the default) and extra spaces."""
    return " ".join(re.sub(r"--workers \d+", "", cmd).split())


def _snakemake_jobs(repo: Path) -> dict[str, dict]:
    proc = run(["snakemake", "--detailed-summary"], cwd=repo)
    rows = list(csv.DictReader(io.StringIO(proc.stdout[proc.stdout.index("output_file"):]), delimiter="\t"))
    jobs: dict[str, dict] = {}
    for row in rows:
        job = jobs.setdefault(row["rule"], {"outputs": set(), "inputs": set(), "cmd": row["shellcmd"]})
        job["outputs"].add(row["output_file"])
        job["inputs"].update(i.strip() for i in row["input-file(s)"].split(",") if i.strip() not in ("", "-"))
    return jobs


def _dvc_stages(repo: Path) -> dict[str, dict]:
    """Stages of dvc.yaml with `${...}` resolved, via DVC's own parser."""
    script = (
        "import json, sys\n"
        "from dvc.dependency.param import ParamsDependency\n"
        "from dvc.repo import Repo\n"
        "stages = {}\n"
        "for s in Repo('.').index.stages:\n"
        "    stages[s.name] = {'cmd': s.cmd, 'deps': [d.def_path for d in s.deps if not isinstance(d, ParamsDependency)],\n"
        "                      'outs': [o.def_path for o in s.outs], 'metrics': [o.def_path for o in s.outs if o.metric]}\n"
        "json.dump(stages, sys.stdout)\n"
    )
    return json.loads(run(["python", "-c", script], cwd=repo).stdout)


def test_every_snakemake_rule_is_a_dvc_stage_with_the_same_command_and_files(snakemake_run: Path):
    jobs = _snakemake_jobs(snakemake_run)
    stages = _dvc_stages(snakemake_run)
    assert set(jobs) - {"all"} == set(stages), "rules and DVC stages differ"
    for name, job in jobs.items():
        stage = stages[name]
        assert _normalise(stage["cmd"]) == _normalise(job["cmd"]), f"stage {name}: command differs"
        assert set(stage["outs"]) == job["outputs"], f"stage {name}: outputs differ"
        for path in job["inputs"]:
            covered = any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in stage["deps"])
            assert covered, f"stage {name}: Snakemake input {path} is not a DVC dep"
        for dep in stage["deps"]:
            assert (snakemake_run / dep).exists(), f"stage {name}: DVC dep {dep} does not exist"
