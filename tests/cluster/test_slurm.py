"""The workflow on a real SLURM: a one-node cluster started by scripts/slurm-local.sh (Debian's
slurm-wlm, munge, slurmdbd with a local MariaDB for sacct), the tiny DAG through
``--executor slurm`` with the repository's profile, compared file by file with a local run.

Marked ``slurm`` (and ``slow``): not part of ``./test.sh``'s default run; CI runs it with
``./test.sh -m slurm tests/cluster`` (.ci/run). Needs root and apt-get; it skips without them,
or fails where SIPE_REQUIRE_SLURM=1 says it must run (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import REPO, copy_repo, run

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = REPO / "scripts/slurm-local.sh"
PROFILE = ["--workflow-profile", "workflow/profiles/slurm"]
# The local run uses --cores 2: the same threads per job give the same numbers.
SLURM_RUN = ["snakemake", *PROFILE, "--max-threads", "2", "--slurm-init-seconds-before-status-checks", "4"]
TIMING_KEY = re.compile(r"(_s|_at|seconds|elapsed)$")  # wall-clock fields of the JSON summaries


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it installs Debian packages and starts the SLURM daemons"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "needs apt-get (Debian/Ubuntu) to install slurm-wlm, slurmdbd, munge and mariadb-server"
    if Path("/etc/slurm/slurm.conf").exists():
        return "/etc/slurm/slurm.conf exists: a SLURM is already configured here (scripts/slurm-local.sh stop)"
    return None


def _script(command: str, state: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIPE_SLURM_DIR": str(state)}
    proc = subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 and command != "status":
        raise AssertionError(f"slurm-local.sh {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _daemon_pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (state / "run").glob("*.pid")}


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster; its daemons are stopped, by pid, when the module's tests are done."""
    reason = _unavailable()
    if reason:
        if os.environ.get("SIPE_REQUIRE_SLURM") == "1":
            pytest.fail(f"SIPE_REQUIRE_SLURM=1 but the SLURM test cannot run: {reason}")
        pytest.skip(reason)
    # Not under pytest's private (mode 700) folders: the daemons run as the users munge, mysql and slurm.
    state = Path(tempfile.mkdtemp(prefix="sipe-slurm-test-", dir="/tmp"))
    state.chmod(0o755)
    start = time.monotonic()
    _script("install", state, timeout=1200)
    installed = time.monotonic()
    try:
        _script("start", state, timeout=300)
        started = time.monotonic()
        print(f"\ncluster: install {installed - start:.1f} s (no-op when installed), start {started - installed:.1f} s")
        pids = _daemon_pids(state)
        assert set(pids) >= {"mariadbd", "slurmdbd", "slurmctld", "slurmd"}
        yield state
    finally:
        pids = _daemon_pids(state)
        stop_start = time.monotonic()
        _script("stop", state, timeout=120)
        print(f"cluster: stop {time.monotonic() - stop_start:.1f} s")
    still = [f"{name} ({pid})" for name, pid in pids.items() if Path(f"/proc/{pid}").exists()]
    assert not still, f"daemons still running after stop: {still}"
    assert not list((state / "run").glob("*.pid")) and not Path("/etc/slurm/slurm.conf").exists()
    shutil.rmtree(state)  # the database alone is about 100 MB


def _sacct(run_id: str) -> pd.DataFrame:
    """The allocations of one Snakemake run (its jobs are named after the run id), one row per job."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", "now-3hours", "--name", run_id,
                          "-o", "JobID,Comment%200,State,ExitCode,AllocCPUS,ReqMem,Elapsed"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    table = pd.DataFrame(rows, columns=["job", "comment", "state", "exit", "cpus", "mem", "elapsed"])
    # The plugin's comment is rule_<rule> or rule_<rule>_wildcards_<values>.
    table["rule"] = table["comment"].str.removeprefix("rule_").str.split("_wildcards_").str[0]
    return table


def _job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: jobs per rule, without the local target rule ``all``."""
    table = output[output.index("Job stats:"):].split("total")[0]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}
    counts.pop("all", None)
    return counts


def _run_id(output: str) -> str:
    return re.search(r"SLURM run ID: (\S+)", output)[1]


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if not TIMING_KEY.search(k)}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def _same_output(a: Path, b: Path) -> bool:
    """Byte-identical, except: checkpoints compare their tensors (torch.save's zip names the temporary
    file it was written to), JSON and step CSVs compare without their wall-clock fields."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix in (".pt", ".pth"):
        return _tensors_equal(torch.load(a, weights_only=True), torch.load(b, weights_only=True))
    if a.suffix == ".json":
        return _without_timing(json.loads(a.read_text())) == _without_timing(json.loads(b.read_text()))
    if a.suffix == ".csv":
        ta, tb = pd.read_csv(a), pd.read_csv(b)
        keep = [c for c in ta.columns if not TIMING_KEY.search(c)]
        return list(ta.columns) == list(tb.columns) and ta[keep].equals(tb[keep])
    return False


def _outputs(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for folder in ("data", "results") for p in (repo / folder).rglob("*")
                  if p.is_file() and p.name != ".snakemake_timestamp")


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> tuple[Path, Path, str]:
    """Two identical tiny repository copies: the whole DAG ran locally on one, through ``--executor
    slurm`` on the other. Returns (local copy, SLURM copy, SLURM run's output)."""
    base = tmp_path_factory.mktemp("runs")
    slurm = copy_repo(base / "slurm")
    local = Path(shutil.copytree(slurm, base / "local", symlinks=True))
    start = time.monotonic()
    run(["snakemake", "--cores", "2"], cwd=local, timeout=1800)
    middle = time.monotonic()
    proc = run(SLURM_RUN, cwd=slurm, timeout=1800)
    print(f"\ntiny DAG: {middle - start:.1f} s local (--cores 2), {time.monotonic() - middle:.1f} s under SLURM")
    return local, slurm, proc.stdout + proc.stderr


def test_the_tiny_dag_runs_as_slurm_jobs_like_a_local_run(runs):
    local, slurm, output = runs
    counts = _job_counts(output)
    jobs = _sacct(_run_id(output))
    print(f"\n{len(jobs)} SLURM jobs\n{jobs.drop(columns='rule').to_string(index=False)}")

    # Every job of the DAG (but the target rule `all`) was a SLURM job of its rule, and completed.
    assert jobs["rule"].value_counts().to_dict() == counts
    assert set(jobs["state"]) == {"COMPLETED"} and set(jobs["exit"]) == {"0:0"}
    assert counts["make_cams"] >= 2  # the shards are jobs of their own

    # The same outputs as the local run of the same copy.
    files = _outputs(slurm)
    assert files == _outputs(local)
    differ = [f for f in files if not _same_output(slurm / f, local / f)]
    assert not differ, f"outputs differ between the SLURM and the local run: {differ}"


def test_a_failing_job_is_reported_as_failed(runs):
    _, repo, _ = runs
    target = "results/synthetic/sipe/cams/index.json"
    model = repo / "results/synthetic/sipe/model.pt"
    model.write_bytes(b"not a checkpoint")  # newer than the maps: the IS-CAM shards rerun and fail
    proc = run([*SLURM_RUN, "--retries", "0", target], cwd=repo, check=False, timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error in rule make_cams" in output
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", output)
    jobs = _sacct(_run_id(output))
    print(f"\nthe failing run's SLURM jobs\n{jobs.drop(columns='rule').to_string(index=False)}")
    assert len(jobs) >= 1 and set(jobs["rule"]) == {"make_cams"}
    assert set(jobs["state"]) == {"FAILED"} and set(jobs["exit"]) == {"1:0"}
    log = (repo / "logs/synthetic/make_cams_sipe_1-of-2.log").read_text()
    assert f"{model.relative_to(repo)}: cannot read" in log.splitlines()[-1]  # the one-line error names the file
