"""One state for Snakemake and DVC: each tool's records follow the other's runs (``sipe sync``).

Snakemake decides what to rerun from file dates and its metadata (.snakemake/); DVC from content hashes
in dvc.lock. Both describe the same files, so they are kept in step at two moments
(docs/architecture.md, "One state, two tools"):

* after a successful Snakemake run of the whole DAG (the Snakefile's ``onsuccess``), DVC records what
  Snakemake produced: ``dvc commit --force --no-relink`` (no file is rewritten, so no date changes);
* before a Snakemake run (``./run.sh``), when DVC says the workspace matches dvc.lock (``dvc status``
  clean: after ``dvc exp run``, ``dvc repro``, ``dvc exp apply`` or ``dvc checkout``), Snakemake's
  records are brought in line with ``snakemake --touch``: outputs that DVC vouches for are marked
  current, with the settings and code they were made with.

Both steps first regenerate dvc.yaml from the workflow if params.yaml changed the DAG's shape
(:mod:`sipe.dvc_stages`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from sipe import dvc_stages
from sipe.errors import SipeError

log = logging.getLogger(__name__)


def _run(cmd: list[str], workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


def _failure(proc: subprocess.CompletedProcess) -> str:
    """The last line a failed command printed (where DVC and Snakemake say what went wrong)."""
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _dvc_project(workdir: Path) -> bool:
    """Whether ``workdir`` is a DVC project and the ``dvc`` command is available."""
    return (workdir / ".dvc").is_dir() and shutil.which("dvc") is not None


def dvc_up_to_date(workdir: Path) -> bool:
    """``dvc status`` finds every stage's dependencies and outputs as dvc.lock records them."""
    return (workdir / "dvc.lock").is_file() and _run(["dvc", "status", "--quiet"], workdir).returncode == 0


def record_in_dvc(workdir: Path = Path(".")) -> str:
    """After Snakemake brought the whole DAG up to date: write dvc.lock for it, leaving every file as it is."""
    workdir = Path(workdir)
    if not _dvc_project(workdir):
        return "not a DVC project: nothing recorded"
    dvc_stages.write(workdir)
    proc = _run(["dvc", "commit", "--force", "--no-relink", "--quiet"], workdir)
    if proc.returncode != 0:
        raise SipeError(f"dvc commit failed: {_failure(proc)}")
    return "dvc.lock records this run"


def _ancestors() -> set[int]:
    """This process and its ancestors (./run.sh, the shell), which share its working directory."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def pipeline_processes(workdir: Path) -> list[int] | None:
    """Processes working in ``workdir`` that run snakemake or a ``sipe`` stage (a live run, or the jobs a killed
    Snakemake left), this process and its ancestors aside; ``None`` where /proc cannot tell."""
    proc, here, own = Path("/proc"), Path(workdir).resolve(), _ancestors()
    if not (proc / "self" / "cwd").exists():
        return None
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            if Path(os.readlink(entry / "cwd")) != here:
                continue
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone, or another user's
            continue
        words = [Path(a).name for a in args]
        if any("snakemake" in w for w in words) or "sipe" in words:
            found.append(int(entry.name))
    return sorted(found)


def unlock_stale(workdir: Path = Path(".")) -> str | None:
    """A Snakemake lock (.snakemake/locks) that no process holds, left by a killed run, is removed
    (``snakemake --unlock``); ``None`` when there is no lock. A lock that a live run may hold stays."""
    workdir = Path(workdir)
    if not any((workdir / ".snakemake" / "locks").glob("*.lock")):
        return None
    holders = pipeline_processes(workdir)
    if holders is None:
        return "Snakemake's lock may be left by a killed run: if no run is going on here, run ./run.sh --unlock"
    if holders:
        return (f"Snakemake's lock is held: process {holders[0]} runs the pipeline here (wait for it, or stop it "
                "and run ./run.sh --unlock)")
    proc = _run(["snakemake", "--unlock", "--cores", "1", "--quiet"], workdir)
    if proc.returncode != 0:
        raise SipeError(f"snakemake --unlock failed: {_failure(proc)}")
    return "removed the Snakemake lock a killed run left (no snakemake process runs here)"


def sync_snakemake(workdir: Path = Path(".")) -> str:
    """Before a Snakemake run: remove a stale Snakemake lock (:func:`unlock_stale`); if DVC vouches for the
    workspace, mark its outputs current for Snakemake."""
    workdir = Path(workdir)
    unlocked = unlock_stale(workdir)
    if unlocked:
        log.info("sync: %s", unlocked)
    if not _dvc_project(workdir):
        return "not a DVC project: nothing to sync"
    if dvc_stages.write(workdir):
        return "dvc.yaml regenerated from the workflow; Snakemake decides what to run"
    if not dvc_up_to_date(workdir):
        return "the workspace differs from dvc.lock; Snakemake decides what to run"
    proc = _run(["snakemake", "--touch", "--cores", "1", "--quiet", "all", "--no-hooks", "--rerun-incomplete"],
                workdir)
    if proc.returncode != 0:
        raise SipeError(f"snakemake --touch failed: {_failure(proc)}")
    return "the workspace matches dvc.lock; Snakemake's records follow it"


def sync(after_run: bool, workdir: Path = Path(".")) -> None:
    """The ``sipe sync`` command: :func:`record_in_dvc` with ``after_run``, else :func:`sync_snakemake`."""
    message = record_in_dvc(workdir) if after_run else sync_snakemake(workdir)
    log.info("sync: %s", message)
