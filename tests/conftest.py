"""Shared fixtures: a copy of the repository with tiny settings, for whole-workflow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
    params = merged(merged(yaml.safe_load((dest / "params.yaml").read_text()), load_config(config)), overrides)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
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
