"""The Snakemake workflow: lint, schema enforcement, outputs, caching, and its conda environment."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import yaml

from tests.conftest import REPO, copy_repo, run


def test_lint_is_clean():
    proc = run(["snakemake", "--lint"], cwd=REPO)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_conda_env_pins_equal_the_lock_file():
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower()] = version
    env = yaml.safe_load((REPO / "workflow/envs/sipe.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert len(pip) >= 10
    for pin in pip:
        name, version = pin.split("==")
        assert lock[name.lower()] == version, f"workflow/envs/sipe.yaml pins {pin}, requirements.lock has {lock[name.lower()]}"


def test_schema_is_enforced_by_snakemake(tmp_path):
    repo = copy_repo(tmp_path, synthetic={"border": 99})
    proc = run(["snakemake", "-n"], cwd=repo, check=False)
    assert proc.returncode != 0
    assert "On instance['synthetic']['border']:\n    99" in proc.stdout + proc.stderr


def test_config_overrides_are_refused(tmp_path):
    repo = copy_repo(tmp_path)
    proc = run(["snakemake", "-n", "--config", "dataset=voc"], cwd=repo, check=False)
    assert proc.returncode != 0
    assert "settings come from params.yaml only" in proc.stdout + proc.stderr


def test_dag_produces_dataset_and_report(snakemake_run: Path):
    data = snakemake_run / "data/synthetic"
    assert len(list((data / "JPEGImages").glob("*.jpg"))) == 24 + 8
    assert (data / "dataset.json").is_file()
    report = snakemake_run / "results/synthetic/dataset"
    stats = yaml.safe_load((report / "stats.json").read_text())
    assert stats["splits"] == {"train_aug": 24, "train": 8, "val": 8}
    assert (report / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    classes = (report / "class_stats.csv").read_text().splitlines()
    assert classes[0].startswith("class,class_index,images") and classes[1].startswith("red-ring,1,")
    assert (snakemake_run / "logs/synthetic/prepare_data.log").stat().st_size > 0
    table = (snakemake_run / "results/synthetic/localisation.csv").read_text().splitlines()
    assert table[0] == "method,model,bg_threshold,mIoU,paper_voc_mIoU" and len(table) == 5
    # the sipe model's maps cover train_aug (refinement needs them), nogsc's only the scored train split;
    # each written by two shard jobs
    for variant, role, count in (("sipe", "train_aug", 24), ("nogsc", "train", 8)):
        maps = sorted(p.stem for p in (snakemake_run / f"results/synthetic/{variant}/cams").glob("*.npz"))
        assert len(maps) == count
        index = json.loads((snakemake_run / f"results/synthetic/{variant}/cams/index.json").read_text())
        assert index["role"] == role and index["ids"] == maps
        assert (snakemake_run / f"results/synthetic/{variant}/cams/shards/2-of-2.json").is_file()


def test_second_run_is_a_fast_no_op(snakemake_run: Path):
    start = time.monotonic()
    proc = run(["snakemake", "--cores", "2"], cwd=snakemake_run)
    elapsed = time.monotonic() - start
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert elapsed <= 5.0, f"no-op run took {elapsed:.1f} s"


def test_param_change_reruns_only_dependent_rules(snakemake_run: Path, tmp_path):
    params = yaml.safe_load((snakemake_run / "params.yaml").read_text())
    params["dataset_report"]["samples"] = 2
    original = (snakemake_run / "params.yaml").read_text()
    (snakemake_run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        proc = run(["snakemake", "-n", "--quiet", "rules"], cwd=snakemake_run)
    finally:
        (snakemake_run / "params.yaml").write_text(original)
    out = proc.stdout + proc.stderr
    assert "dataset_report" in out and "prepare_data" not in out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".snakemake_timestamp"}


def test_dvc_repro_matches_snakemake_and_is_a_fast_no_op(snakemake_run: Path, tmp_path):
    """The data stages through DVC give byte-identical files; the whole DVC DAG's shape is test_dvc_agrees'."""
    repo = copy_repo(tmp_path)
    run(["dvc", "repro", "dataset_report"], cwd=repo)
    assert _digest(repo / "data/synthetic") == _digest(snakemake_run / "data/synthetic")
    assert (repo / "results/synthetic/dataset/contact_sheet.png").read_bytes() == \
        (snakemake_run / "results/synthetic/dataset/contact_sheet.png").read_bytes()
    start = time.monotonic()
    proc = run(["dvc", "repro", "dataset_report"], cwd=repo)
    elapsed = time.monotonic() - start
    assert "didn't change, skipping" in proc.stdout and "Running stage" not in proc.stdout
    assert elapsed <= 5.0, f"no-op dvc repro took {elapsed:.1f} s"
