"""Shared fixtures: a copy of the repository with tiny settings, for whole-workflow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sipe.dvc_stages import shape_of
from tests.tiny import REPO, load_config, merged

BIN = Path(sys.executable).parent  # the environment's bin/ (snakemake, dvc, sipe)
GENERATED = ("data/", "results/", "logs/")  # outputs of earlier runs in this checkout, not copied


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command with the test environment's bin/ first on PATH; return the completed process."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def copy_run(repo: Path, dest: Path) -> Path:
    """A copy of a repository where the DAG ran (dates, Snakemake metadata and DVC cache included). DVC's cache
    files are hard links: DVC names them by content and never rewrites one, and the tiny run's cache is as large
    as its results (the checkpoints)."""
    def link_cache_copy_rest(src: str, dst: str) -> None:
        if Path(src).is_relative_to(Path(repo) / ".dvc" / "cache"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    return Path(shutil.copytree(repo, dest, symlinks=True, copy_function=link_cache_copy_rest))


def run_sh(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """What ./run.sh does, in the test environment (./run.sh itself would install an environment per checkout):
    ``sipe sync``, then Snakemake with the default profile."""
    run(["python", "-m", "sipe", "sync"], cwd=repo)
    return run(["snakemake", "--workflow-profile", "workflow/profiles/default", *args], cwd=repo)


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Planned jobs per rule from the first "Job stats" table of a Snakemake dry run (empty: nothing to do)."""
    if "Nothing to be done" in dry_run_output:
        return {}
    lines = dry_run_output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("job ")) + 2
    counts = {}
    for line in lines[start:]:
        if not line.strip() or line.startswith("total"):
            break
        rule, count = line.split()
        counts[rule] = int(count)
    return counts


def copy_repo(dest: Path, config: str = "dag", **overrides) -> Path:
    """Copy the repository's files (tracked and new, not ignored) to ``dest`` with the params.yaml settings of
    test configuration ``config`` (tests/configs/), then ``overrides`` (section → dict or value)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if name == "dvc.lock" or (name.startswith(GENERATED) and not name.endswith("README.md")):
            continue  # outputs of earlier runs in this checkout
        src = REPO / name
        if src.is_file() or src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    default = yaml.safe_load((dest / "params.yaml").read_text())
    params = merged(merged(default, load_config(config)), overrides)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if shape_of(params) != shape_of(default):  # another DAG: dvc.yaml follows, as ./run.sh would do
        run(["python", "-m", "sipe", "dvc-yaml"], cwd=dest, check=False)  # fails where the DAG can't be built
    # DVC needs a Git repository around its project.
    run(["git", "init", "-q"], cwd=dest)
    run(["git", "add", "-A"], cwd=dest)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "copy"], cwd=dest)
    return dest


@pytest.fixture(scope="session")
def snakemake_run(tmp_path_factory) -> Path:
    """A repository copy on which the whole Snakemake DAG has run once (test configuration dag.yaml)."""
    repo = copy_repo(tmp_path_factory.mktemp("snakemake_repo"))
    run(["snakemake", "--cores", "2"], cwd=repo)
    return repo
