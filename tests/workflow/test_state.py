"""Snakemake and DVC share one state (sipe/state.py; docs/architecture.md, "One state, two tools").

Each test works on a copy of a repository where the whole DAG ran once with Snakemake (whose ``onsuccess``
recorded the run in dvc.lock), and counts the jobs or stages the tools then run or plan.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_run, job_counts, run, run_sh

pytestmark = pytest.mark.slow

BG_THRESHOLDS = "eval_cams.bg_thresholds=[0.1,0.2,0.3]"


@pytest.fixture
def repo(snakemake_run: Path, tmp_path: Path) -> Path:
    """A copy of the run (dates, Snakemake metadata and DVC cache included), its dvc.lock committed to Git as
    the baseline that experiments start from."""
    copy = tmp_path / "repo"
    copy_run(snakemake_run, copy)
    run(["git", "add", "-A"], cwd=copy)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "baseline"], cwd=copy)
    return copy


def planned_jobs(repo: Path) -> dict[str, int]:
    """``./run.sh -n``: planned jobs per rule (empty: nothing to do)."""
    out = run_sh(repo, "-n", "--quiet", "rules")
    return job_counts(out.stdout + out.stderr)


def dvc_stages_run(output: str) -> set[str]:
    """Stage names from DVC's ``Running stage 'NAME':`` lines."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def snakemake_rules_run(output: str) -> set[str]:
    """Rule names from Snakemake's job headers (``rule NAME:`` / ``localrule NAME:``)."""
    return set(re.findall(r"^(?:local)?rule (\w+):$", output, flags=re.MULTILINE))


def downstream(repo: Path, key: str) -> set[str]:
    """DVC stages that depend on params key ``key`` (or a section holding it), and every stage after them."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    hit = {name for name, stage in stages.items()
           if any(key == p or key.startswith(p + ".") for p in stage.get("params", []))}
    outs = {name: [o if isinstance(o, str) else next(iter(o)) for kind in ("outs", "metrics", "plots")
                   for o in stage.get(kind, [])] for name, stage in stages.items()}
    changed = True
    while changed:
        changed = False
        for name, stage in stages.items():
            if name not in hit and any(d == o or d.startswith(o + "/") for d in stage.get("deps", [])
                                       for upstream in hit for o in outs[upstream]):
                hit.add(name)
                changed = True
    return hit


def test_after_a_run_dvc_is_up_to_date_and_a_second_run_plans_nothing(repo):
    assert (repo / "dvc.lock").is_file()
    assert run(["dvc", "status", "--quiet"], cwd=repo, check=False).returncode == 0
    assert planned_jobs(repo) == {}


def test_dvc_exp_run_reruns_only_what_follows_the_key_and_snakemake_agrees(repo):
    out = run(["dvc", "exp", "run", "-S", BG_THRESHOLDS], cwd=repo).stdout
    ran = dvc_stages_run(out)
    assert {"eval_cams-sipe", "eval_cams-nogsc"} <= ran <= downstream(repo, "eval_cams.bg_thresholds"), ran
    assert "train_sipe-sipe" not in ran and "make_cams-sipe" not in ran
    assert planned_jobs(repo) == {}


def test_a_sharded_stage_run_by_dvc_writes_the_files_snakemake_expects(repo):
    """deeplab.flip (false by default): DVC runs both shards of `segment` and the gather checks, as Snakemake would."""
    ran = dvc_stages_run(run(["dvc", "exp", "run", "-S", "deeplab.flip=true"], cwd=repo).stdout)
    assert "segment-val" in ran and not any(name.startswith(("train_", "make_cams")) for name in ran)
    assert sorted(p.name for p in (repo / "results/synthetic/deeplab/val/shards").glob("*.json")) == [
        "1-of-2.json", "2-of-2.json"]
    assert planned_jobs(repo) == {}


def test_a_setting_that_changes_the_stages_stops_dvc_with_one_line(repo):
    """refine.method decides which labels DeepLab trains on: dvc.yaml must be regenerated first."""
    proc = run(["dvc", "exp", "run", "-S", "refine.method=crf"], cwd=repo, check=False)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("sipe ")]
    assert len(lines) == 1 and "generated for refine.method='irn' but params.yaml says 'crf'" in lines[0], lines
    assert dvc_stages_run(proc.stdout + proc.stderr) == {"train_deeplab"}


def test_exp_apply_and_checkout_leave_nothing_to_do(repo):
    run(["dvc", "exp", "run", "-S", BG_THRESHOLDS, "--name", "thresholds"], cwd=repo)
    sweep = repo / "results/synthetic/sipe/eval_cams/cam_threshold_sweep.csv"
    assert len(sweep.read_text().splitlines()) == 1 + 3
    # back to the committed baseline: git restores params.yaml and dvc.lock, DVC the outputs
    run(["git", "checkout", "--", "params.yaml", "dvc.lock"], cwd=repo)
    run(["dvc", "checkout"], cwd=repo)
    assert len(sweep.read_text().splitlines()) != 1 + 3
    assert planned_jobs(repo) == {}
    run(["dvc", "exp", "apply", "thresholds"], cwd=repo)
    assert len(sweep.read_text().splitlines()) == 1 + 3
    assert planned_jobs(repo) == {}
    # the ledger: the experiment beside the baseline, with the setting that tells them apart
    table = run(["python", "-m", "sipe", "compare", "--md"], cwd=repo).stdout
    assert "## Tab. 4 - IPE and GSC, train mIoU" in table and "| thresholds " in table
    differ = table.split("## Settings that differ")[1]
    assert "eval_cams.bg_thresholds" in differ and "[0.1, 0.2, 0.3]" in differ


def test_an_edited_setting_reruns_the_same_work_in_both_tools(repo, tmp_path):
    """Thresholds without either model's best one (0.3 and 0.4 on the tiny run), so that every file after
    eval_cams changes: where a rerun stage reproduces its output byte for byte, DVC stops there while Snakemake,
    which plans before it runs, also reruns what follows (docs/architecture.md, "One state, two tools")."""
    twin = tmp_path / "twin"
    copy_run(repo, twin)
    for copy in (repo, twin):
        params = yaml.safe_load((copy / "params.yaml").read_text())
        params["eval_cams"]["bg_thresholds"] = [0.1, 0.2]
        (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run_sh(repo)
    by_snakemake = snakemake_rules_run(out.stdout + out.stderr)
    by_dvc = {name.split("-")[0] for name in dvc_stages_run(run(["dvc", "repro"], cwd=twin).stdout)}
    assert by_snakemake - {"all"} == by_dvc == {"eval_cams", "localisation_table", "refinement_table",
                                                "summary_table", "headline_metrics"}
    # and each tool's run leaves the other nothing to do
    assert run(["dvc", "status", "--quiet"], cwd=repo, check=False).returncode == 0
    assert planned_jobs(twin) == {}
