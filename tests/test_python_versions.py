"""Supported Pythons: scripts/env.sh's range, one lock per version, and (slow) a real environment per version.

The slow test builds an environment with scripts/env.sh for each Python in SLOW_VERSIONS, in a cache folder
outside the checkout (SIPE_TEST_VENVS, default ~/.cache/sipe-pipeline), then runs tests/test_ipe.py, the
dense-CRF tests (pydensecrf2 is compiled per Python) and `snakemake -n` with it. An environment whose lock
stamp still matches is reused, so only the first run (or a lock change) pays the install. A missing
interpreter skips, or fails when SIPE_REQUIRE_PYTHONS=1 (CI).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from tests.conftest import REPO, copy_repo

ENV_SH = REPO / "scripts/env.sh"
SLOW_VERSIONS = ("3.12", "3.13")


def supported() -> list[str]:
    """The versions scripts/env.sh accepts, oldest first."""
    return re.search(r'^\s*local supported="([^"]+)"', ENV_SH.read_text(), re.M).group(1).split()


def lock_file(version: str) -> Path:
    return REPO / ("requirements.lock" if version == "3.11" else f"requirements/py{version}.lock")


def pins(path: Path) -> dict[str, str]:
    """name (normalised) -> version of a lock file; every line is a comment or an exact pin."""
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^=\s;]+", line), f"{path.name}: not an exact pin: {line!r}"
        name, version = line.split("==")
        out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def source_env(script: str, cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """Run `source scripts/env.sh && <script>` in bash, outside the test run's own environment."""
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SIPE_PYTHON", "SIPE_VENV")}
    return subprocess.run(["bash", "-c", f'source "{ENV_SH}" && {script}'], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=timeout)


def fake_python(path: Path, version: str) -> Path:
    """An executable that answers env.sh's version probe as Python `version` and fails at anything else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\ncase "$*" in *version_info*) echo {version};; '
                    f'*) echo "fake python {version}: $*" >&2; exit 3;; esac\n')
    path.chmod(0o755)
    return path


def test_pyproject_and_locks_match_the_supported_versions():
    versions = supported()
    assert versions[0] == "3.11" and versions == sorted(versions, key=lambda v: int(v.split(".")[1]))
    spec = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    lo, hi = (int(v.split(".")[1]) for v in (versions[0], versions[-1]))
    assert [f"3.{m}" for m in range(lo - 1, hi + 2) if f"3.{m}.0" in spec] == versions
    reference = pins(lock_file("3.11"))
    for version in versions:
        lock = pins(lock_file(version))
        assert f"for Python {version} " in lock_file(version).read_text().splitlines()[0]
        assert lock["torch"] == "2.14.1" and lock["torchvision"] == "0.29.1", version
        # The locks move together: a package both have is pinned alike (regenerate all when one changes).
        assert {k: v for k, v in lock.items() if reference.get(k, v) != v} == {}, version
    section = (REPO / "README.md").read_text().split("## Run it", 1)[1].split("\n## ", 1)[0]
    assert f"Python {versions[0]} to {versions[-1]}" in section


@pytest.mark.parametrize("python", ["3.10", "3.14", None])
def test_an_unsupported_python_gets_one_line(tmp_path, python):
    interpreter = fake_python(tmp_path / "bin/python", python) if python else tmp_path / "no-python"
    proc = source_env("true", tmp_path, SIPE_PYTHON=str(interpreter), SIPE_VENV=str(tmp_path / "venv"))
    assert proc.returncode == 1
    lo, hi = supported()[0], supported()[-1]
    assert proc.stderr.count("\n") == 1 and f"needs Python {lo} to {hi}" in proc.stderr, proc.stderr
    assert (f"is Python {python}." if python else "is not a working Python.") in proc.stderr
    assert not (tmp_path / "venv").exists()


def test_the_newest_supported_python_on_path_makes_a_new_environment(tmp_path):
    newest = supported()[-1]
    bin_ = tmp_path / "bin"
    fake_python(bin_ / f"python{newest}", newest)
    fake_python(bin_ / "python3", f"3.{int(newest.split('.')[1]) + 1}")  # newer, unsupported: passed over
    proc = source_env("true", tmp_path, SIPE_VENV=str(tmp_path / "venv"), PATH=f"{bin_}:{os.environ['PATH']}")
    # The fake fails to make the venv; what matters is which interpreter env.sh chose and which lock.
    assert f"with Python {newest} ({bin_ / f'python{newest}'}) from {lock_file(newest).relative_to(REPO)}" in proc.stderr
    assert proc.returncode == 1 and f"fake python {newest}: -m venv --clear" in proc.stderr


def test_a_folder_that_is_not_a_venv_is_left_alone(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/keep.txt").write_text("mine")
    proc = source_env("true", tmp_path, SIPE_PYTHON=str(fake_python(tmp_path / "bin/python", supported()[-1])),
                      SIPE_VENV=str(tmp_path / "data"))
    assert proc.returncode == 1 and "is not a virtual environment" in proc.stderr
    assert (tmp_path / "data/keep.txt").read_text() == "mine"


def find_python(version: str) -> str | None:
    """python3.X on PATH, else the newest pyenv build of it; only one that really is that version."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    builds = sorted(pyenv.glob(f"{version}.*/bin/python{version}"),
                    key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])], reverse=True)
    for candidate in [shutil.which(f"python{version}"), *map(str, builds)]:
        if candidate and subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                        capture_output=True, text=True).stdout.strip() == version:
            return candidate
    return None


@pytest.mark.slow
@pytest.mark.parametrize("version", SLOW_VERSIONS)
def test_environment_per_python(tmp_path, version, capsys):
    python = find_python(version)
    if python is None:
        message = f"no Python {version} interpreter (python{version} on PATH or under ~/.pyenv/versions)"
        if os.environ.get("SIPE_REQUIRE_PYTHONS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cache = Path(os.environ.get("SIPE_TEST_VENVS") or Path.home() / ".cache/sipe-pipeline")
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"venv-py{version}"
    env = {"SIPE_PYTHON": python, "SIPE_VENV": str(venv), "OMP_NUM_THREADS": "1"}
    # One test run at a time per environment: checkouts on this machine share it.
    with open(cache / f"venv-py{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.monotonic()
        proc = source_env("python -c 'import sys, torch, torchvision, sipe; print(sys.version)'",
                          tmp_path, timeout=3600, **env)
        install_s = time.monotonic() - start
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        assert proc.stdout.startswith(version + "."), proc.stdout
        how = "installed" if "Installing" in proc.stderr else "updated" if "Updating" in proc.stderr else "reused"

        repo = copy_repo(tmp_path / "repo")
        start = time.monotonic()
        proc = source_env("python -m pytest -q -p no:cacheprovider tests/test_ipe.py tests/refine/test_crf.py"
                          " && snakemake -n",
                          repo, timeout=1800, **env)
        tests_s = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stderr.count("Installing") == proc.stderr.count("Updating") == 0  # the stamp matched: reused
    assert re.search(r"^\d+ passed", proc.stdout, re.M), proc.stdout[-2000:]
    assert "This was a dry-run" in proc.stdout + proc.stderr
    with capsys.disabled():
        print(f"\nPython {version} ({python}): environment {how} in "
              f"{install_s:.0f} s; test_ipe.py, test_crf.py and snakemake -n passed in {tests_s:.0f} s ({venv})")
