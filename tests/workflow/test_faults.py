"""Fault injection (issue 15): SIGKILL the whole Snakemake process group at points of every stage kind, then
run ./run.sh (emulated) and check that every output is the one an uninterrupted run made.

Each scenario works on a copy of the finished tiny run (``snakemake_run``), reruns a part of the DAG (a forced
rule, or a setting change and its revert), kills Snakemake and its jobs (``os.killpg``, SIGKILL) when a given
point is reached, possibly several times in a row, and finally runs ``sipe sync`` + snakemake with the default
profile, as ./run.sh does (a stale lock is removed by ``sipe sync``). Then every file under ``data/`` and
``results/`` of the reference must be there and equal: byte for byte, checkpoints by their tensors
(``torch.load(weights_only=True)``, ``torch.equal``), ``train.json`` and ``steps.csv`` without their clock
entries (wall time, dates, the step a resumed run started from). The only extra files allowed are what a killed
job leaves unused (a trainer's ``resume.pt`` and ``*.partial`` log, hidden ``*.tmp`` files). The kill points are
counted and printed (``-s``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import BIN, copy_run, run, run_sh

pytestmark = pytest.mark.slow

KILL_POINTS: list[str] = []  # every kill point tried in this session
VOLATILE = {"wall_s", "session_s", "images_per_s", "steps_per_s", "finished_at", "session_started_at",
            "resumed_from", "time_s"}
RESULTS = "results/synthetic"


# --- running and killing --------------------------------------------------------------------------------

def _env() -> dict:
    """The environment of :func:`tests.conftest.run`, which made the reference run."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _session_commands(session: int) -> list[list[str]]:
    """The command lines of the processes of ``session`` (Snakemake and its jobs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            found.append((entry / "cmdline").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
    return found


def job_running(command: str) -> Callable[[Path, int], bool]:
    """Kill point: a ``sipe <command>`` job runs."""
    return lambda repo, session: any(command in args for args in _session_commands(session))


def file_newer(pattern: str) -> Callable[[Path, int], bool]:
    """Kill point: a file matching ``pattern`` (under the repository) was written after the run started."""
    started = time.time()
    return lambda repo, session: any(p.stat().st_mtime > started for p in repo.glob(pattern) if p.is_file())


def lines_at_least(path: str, count: int) -> Callable[[Path, int], bool]:
    """Kill point: ``path``, written since the run started, has at least ``count`` lines (a training's live
    step log)."""
    started = time.time()

    def reached(repo: Path, session: int) -> bool:
        try:
            return (repo / path).stat().st_mtime > started and (repo / path).read_text().count("\n") >= count
        except OSError:
            return False
    return reached


def kill_when(repo: Path, args: list[str], point: Callable[[Path, int], bool], name: str, rerun: bool = False,
              timeout: float = 300) -> None:
    """Start snakemake and SIGKILL its process group as soon as ``point`` holds; fail if the run ends first.

    ``rerun``: the run after a kill, with the default profile (``rerun-incomplete``) once the stale lock is
    removed as ``sipe sync`` does (:func:`sipe.state.unlock_stale`). The rest of ``sipe sync`` is left out
    here: where the files on disk are still those dvc.lock records, it would mark the DAG current instead of
    rerunning it (right, but then the later kill points would not be reached); the final ./run.sh has it."""
    if rerun:
        out = run(["python", "-c", "from sipe.state import unlock_stale; print(unlock_stale())"], cwd=repo)
        assert "removed the Snakemake lock" in out.stdout, out.stdout + out.stderr
        command = ["snakemake", "--workflow-profile", "workflow/profiles/default", *args]
    else:
        command = ["snakemake", "--cores", "2", *args]
    log = repo / f"killed-{len(KILL_POINTS)}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=repo, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not point(repo, proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
                proc.wait()
                raise AssertionError(f"kill point {name!r} not reached ({' '.join(command)}):\n"
                                     f"{log.read_text()[-3000:]}")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.unlink()
    KILL_POINTS.append(name)
    print(f"kill point {len(KILL_POINTS)}: {name}")


def set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# --- comparing with the uninterrupted run ------------------------------------------------------------------

def _scratch(path: Path) -> bool:
    """What a killed job may leave unused: a trainer's resume.pt and live step log, hidden temporary files."""
    return path.name == "resume.pt" or path.name.endswith(".partial") or (
        path.name.startswith(".") and path.name.endswith(".tmp"))


def _files(repo: Path) -> dict[str, Path]:
    return {str(p.relative_to(repo)): p for top in ("data", "results") for p in (repo / top).rglob("*")
            if p.is_file() or p.is_symlink()}


def _without_clock(value):
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items() if k not in VOLATILE}
    return value


def _same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return a == b


def _same(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    if a.suffix in (".pt", ".pth"):
        return _same_tensors(torch.load(a, weights_only=True), torch.load(b, weights_only=True))
    if a.name == "train.json":
        return _without_clock(json.loads(a.read_text())) == _without_clock(json.loads(b.read_text()))
    if a.name == "steps.csv":
        read = lambda p: pd.read_csv(io.StringIO(p.read_text())).drop(columns="time_s")  # noqa: E731
        return read(a).equals(read(b))
    return a.read_bytes() == b.read_bytes()


def assert_same_outputs(repo: Path, reference: Path) -> None:
    """Every output of ``reference`` is in ``repo`` and equal; nothing else there but scratch files."""
    ours, theirs = _files(repo), _files(reference)
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"missing after the rerun: {missing[:10]}"
    differ = sorted(name for name in theirs if not _same(ours[name], theirs[name]))
    assert not differ, f"not as the uninterrupted run made them: {differ[:10]}"
    extra = sorted(name for name in set(ours) - set(theirs) if not _scratch(ours[name]))
    assert not extra, f"files an uninterrupted run does not make: {extra[:10]}"
    out = run(["snakemake", "--workflow-profile", "workflow/profiles/default", "-n"], cwd=repo)
    assert "Nothing to be done" in out.stdout + out.stderr, "./run.sh -n still plans jobs after the rerun"


@pytest.fixture
def repo(snakemake_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    copy_run(snakemake_run, copy)
    return copy


# --- the scenarios ------------------------------------------------------------------------------------------

def test_killed_training_then_per_image_and_gather_stages(repo, snakemake_run):
    """Issue 15: SIGKILL during ``--forcerun train_irn`` lost refine/irn/model.pt (Snakemake deletes a job's
    outputs first), and the next run said "Nothing to be done". Now the previous model stays until the new
    one is written. Then a kill of the training on other IR labels (a setting change, reverted): its
    checkpoint must not be resumed on the original labels. Kills in the downstream reruns (a per-image
    sharded stage, its gather step, DeepLab's sharded inference) are recovered the same way."""
    model, live_log = f"{RESULTS}/refine/irn/model.pt", f"{RESULTS}/refine/irn/train/steps.csv.partial"
    before = torch.load(repo / model, weights_only=True)
    kill_when(repo, ["--forcerun", "train_irn"], lines_at_least(live_log, 4), "train_irn (forced) after 3 of 6 steps")
    assert _same_tensors(torch.load(repo / model, weights_only=True), before), "the previous IRN model was lost"
    attenuation = yaml.safe_load((repo / "params.yaml").read_text())["ir_labels"]["bg_attenuation"]
    set_param(repo, "ir_labels", "bg_attenuation", attenuation / 2)
    kill_when(repo, [], lines_at_least(live_log, 4), "train_irn on other IR labels (ir_labels.bg_attenuation "
              "changed) after 3 of 6 steps", rerun=True)
    assert _same_tensors(torch.load(repo / model, weights_only=True), before), "the previous IRN model was lost"
    set_param(repo, "ir_labels", "bg_attenuation", attenuation)
    kill_when(repo, [], file_newer(f"{RESULTS}/refine/pseudo_labels/*.png"),
              "pseudo_labels (sharded, per image) after its first label map", rerun=True)
    kill_when(repo, [], job_running("gather-labels"), "gather_pseudo_labels as it starts", rerun=True)
    kill_when(repo, [], lines_at_least(f"{RESULTS}/deeplab/train/steps.csv.partial", 3),
              "train_deeplab after 2 of 4 steps", rerun=True)
    kill_when(repo, [], file_newer(f"{RESULTS}/deeplab/val/pred/*.png"),
              "segment (sharded, two folders) after its first label map", rerun=True)
    run_sh(repo)
    assert_same_outputs(repo, snakemake_run)


def test_killed_after_a_setting_change_and_its_revert(repo, snakemake_run):
    """Issue 15: change ``cams.scales``, kill during make_cams, revert the setting: Snakemake said "Nothing to
    be done" while some maps were made with the other scales. Then kills in the gather step, the evaluation
    and a table of the rerun, and in the run's record in dvc.lock once every job is done."""
    scales = yaml.safe_load((repo / "params.yaml").read_text())["cams"]["scales"]
    set_param(repo, "cams", "scales", [1.0])
    kill_when(repo, [f"{RESULTS}/nogsc/cams/index.json"], file_newer(f"{RESULTS}/nogsc/cams/*.npz"),
              "make_cams (cams.scales changed) after its first map")
    set_param(repo, "cams", "scales", scales)
    kill_when(repo, [], job_running("gather-maps"), "gather_cams as it starts, after the revert", rerun=True)
    kill_when(repo, [], job_running("eval-cams"), "eval_cams as it starts", rerun=True)
    kill_when(repo, [], job_running("localisation-table"), "localisation_table (a table) as it starts",
              rerun=True)
    kill_when(repo, [], job_running("--after-run"), "the run's record in dvc.lock (onsuccess: sipe sync "
              "--after-run)", rerun=True)
    run_sh(repo)
    assert_same_outputs(repo, snakemake_run)


def test_report_kill_points():
    """The number of kill points tried (run after the scenarios; -s shows it)."""
    print(f"fault injection: {len(KILL_POINTS)} kill points: " + "; ".join(KILL_POINTS))
