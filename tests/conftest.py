"""Shared fixtures: a copy of the repository with tiny settings, for whole-workflow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the environment's bin/ (snakemake, dvc, sipe)

# Small enough that the whole DAG takes seconds, large enough that every stage has real work.
GENERATED = ("data/", "results/", "logs/")
TINY_SYNTHETIC = {"train_aug": 24, "train": 8, "val": 8, "min_side": 64, "max_side": 96}
TINY_SIPE = {"crop": 64, "resize_long": [48, 96], "batch_size": 8, "epochs": 2, "checkpoint_every": 2,
             "loader_workers": 0}
TINY_IRN = {"crop": 48, "radius": 5, "batch_size": 4, "epochs": 1, "checkpoint_every": 2, "loader_workers": 0}
TINY_DEEPLAB = {"crop": 48, "batch_size": 4, "iterations": 4, "checkpoint_every": 2, "loader_workers": 0,
                "sheet_samples": 2}


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command with the test environment's bin/ first on PATH; return the completed process."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def copy_repo(dest: Path, **overrides) -> Path:
    """Copy the repository's files (tracked and new, not ignored) to ``dest`` with tiny params.yaml settings."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if name == "dvc.lock" or (name.startswith(GENERATED) and not name.endswith("README.md")):
            continue  # outputs of earlier runs in this checkout
        src = REPO / name
        if src.is_file() or src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["synthetic"].update(TINY_SYNTHETIC)
    params["dataset_report"]["samples"] = 4
    params["sipe"].update(TINY_SIPE)
    params["cams"]["scales"] = [1.0, 0.5]
    params["deeplab"].update(TINY_DEEPLAB)
    params["irn"].update(TINY_IRN)
    params["pseudo_labels"]["pad_size"] = 48
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # DVC needs a Git repository around its project.
    run(["git", "init", "-q"], cwd=dest)
    run(["git", "add", "-A"], cwd=dest)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "copy"], cwd=dest)
    return dest


@pytest.fixture(scope="session")
def snakemake_run(tmp_path_factory) -> Path:
    """A repository copy on which the whole Snakemake DAG has run once (tiny settings)."""
    repo = copy_repo(tmp_path_factory.mktemp("snakemake_repo"))
    run(["snakemake", "--cores", "2"], cwd=repo)
    return repo
