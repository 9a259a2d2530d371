"""Benchmark: the VOC-scale rehearsal of everything that grows with the image count (docs/scaling.md).

In a scratch copy of the repository configured by ``benchmarks/rehearsal.py`` (VOC-sized synthetic set,
the paper's VOC settings), measures wall time and peak memory of:

* ``data``: ``sipe prepare-data`` (generation + validation), ``sipe validate-data`` and ``sipe dataset-report``,
  at ``--fractions`` of VOC's size (per-image times that stay flat = linear growth);
* ``plan``: ``sipe dvc-yaml`` and ``snakemake -n`` (the DAG plan), and the digest of a raw tree of that size;
* ``outputs``: the gather check of a VOC-sized label and map folder, ``dvc commit`` of every per-image output
  folder at VOC size, then ``dvc status`` of the whole pipeline and ``sipe sync`` (what ./run.sh does first) (label PNGs are copies of the GT masks; map files hold random
  bytes of the size ``--map-kb`` of one make-cams file at the paper's settings, see paper_costs.py).

    python benchmarks/voc_scale.py [--work /tmp/sipe-voc-scale] [--phases data plan outputs]
                                   [--fractions 0.125 1] [--map-kb 600]

Results: benchmarks/results/voc_scale.json. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import yaml
from rehearsal import configure, copy_repo, measure, record, run_sipe, voc_sizes

DATA = "data/synthetic"
RESULTS = "results/synthetic"
# Per-image output folders of the VOC DAG: folder → (split its ids come from, what each file is).
OUTPUT_FOLDERS = {
    "sipe/cams": ("train_aug", "map"), "nogsc/cams": ("train", "map"),
    "refine/crf": ("train_aug", "label"), "refine/ir_labels": ("train_aug", "label"),
    "refine/pseudo_labels": ("train_aug", "label"),
    "deeplab/val/pred": ("val", "label"), "deeplab/val/crf": ("val", "label"),
}


def _per_image(result: dict, images: int) -> dict:
    return {**{k: v for k, v in result.items() if k != "output"}, "images": images,
            "ms_per_image": round(1000 * result["wall_s"] / images, 2)}


def file_sizes(data: Path) -> dict:
    """The prepared dataset's size (MB) and the mean size (KiB) of one image (JPEG) and one mask (PNG); the mask
    stands for a label PNG of the same image in the disk estimate."""
    def mean_kb(folder: str) -> float:
        sizes = [f.stat().st_size for f in (data / folder).iterdir()]
        return round(sum(sizes) / len(sizes) / 1024, 2)

    return {"data_folder_mb": round(sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 2**20),
            "image_kb": mean_kb("JPEGImages"), "mask_kb": mean_kb("SegmentationClass")}


def data_phase(work: Path, fractions: list[float], workers: int) -> dict:
    results = {}
    for fraction in fractions:
        repo = copy_repo(work / "repo")
        sizes = voc_sizes(fraction)
        configure(repo, sizes)
        images = sizes["train_aug"] + sizes["val"]
        key = f"{images}_images"
        results[key] = {
            "prepare_data": _per_image(run_sipe(["prepare-data", "--params", "params.yaml", "--out", DATA,
                                                 "--workers", str(workers)], repo), images),
            "validate_data": _per_image(run_sipe(["validate-data", "--data", DATA, "--workers", str(workers)],
                                                 repo), images),
            "dataset_report": _per_image(run_sipe(["dataset-report", "--params", "params.yaml", "--data", DATA,
                                                   "--out", f"{RESULTS}/dataset", "--workers", str(workers)],
                                                  repo), images),
            **file_sizes(repo / DATA),
        }
        print(key, results[key], flush=True)
    return {"data": results}


def plan_phase(work: Path) -> dict:
    repo = work / "repo"
    from sipe.data.raw import tree_digest

    files = sum(1 for f in (repo / DATA).rglob("*") if f.is_file())
    start = time.perf_counter()
    tree_digest([str(repo / DATA)])
    digest_s = time.perf_counter() - start
    results = {
        "dvc_yaml": {k: v for k, v in run_sipe(["dvc-yaml"], repo).items() if k != "output"},
        "tree_digest": {"files": files, "wall_s": round(digest_s, 2)},
    }
    for attempt in ("first", "second"):
        plan = measure(["snakemake", "-n", "--cores", "2"], repo)
        jobs = [line for line in plan["output"].splitlines() if line.strip().startswith("total")]
        results[f"snakemake_n_{attempt}"] = {"wall_s": plan["wall_s"], "peak_rss_mb": plan["peak_rss_mb"],
                                              "jobs": jobs[0].split()[-1] if jobs else None}
    print(results, flush=True)
    return {"plan": results}


def _fill(folder: Path, ids: list[str], kind: str, masks: Path, map_bytes: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for image_id in ids:
        if kind == "label":
            target = folder / f"{image_id}.png"
            shutil.copyfile(masks / f"{image_id}.png", target)
        else:
            target = folder / f"{image_id}.npz"
            target.write_bytes(os.urandom(map_bytes))
        total += target.stat().st_size
    return total


def outputs_phase(work: Path, map_kb: int) -> dict:
    repo = work / "repo"
    lists = repo / DATA / "ImageSets" / "Segmentation"
    ids = {split: (lists / f"{split}.txt").read_text().split() for split in ("train_aug", "train", "val")}
    sizes = {}
    for name, (split, kind) in OUTPUT_FOLDERS.items():
        sizes[name] = _fill(repo / RESULTS / name, ids[split], kind, repo / DATA / "SegmentationClass", map_kb * 1024)
    results = {"folders_mb": {k: round(v / 2**20) for k, v in sizes.items()}}
    results["gather_labels"] = {k: v for k, v in run_sipe(
        ["gather-labels", "--data", DATA, "--labels", f"{RESULTS}/refine/crf", "--role", "train_aug"], repo).items()
        if k != "output"}
    results["gather_maps"] = {k: v for k, v in run_sipe(
        ["gather-maps", "--data", DATA, "--maps", f"{RESULTS}/sipe/cams", "--role", "train_aug"], repo).items()
        if k != "output"}
    stages = ["prepare_data", "make_cams-sipe", "make_cams-nogsc", "crf", "ir_labels", "pseudo_labels", "segment-val"]
    dvc_stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for stage in stages:  # the small inputs no run made here (checkpoints): placeholders
        for dep in dvc_stages[stage].get("deps", []):
            if not (repo / dep).exists():
                (repo / dep).parent.mkdir(parents=True, exist_ok=True)
                (repo / dep).write_text("placeholder\n")
    commit = measure(["dvc", "commit", "--force", "--no-relink", *stages], repo)
    results["dvc_commit"] = {"wall_s": commit["wall_s"], "peak_rss_mb": commit["peak_rss_mb"],
                             "files": sum(1 for folder in (DATA, RESULTS) for f in (repo / folder).rglob("*")
                                          if f.is_file())}
    for attempt in ("first", "second"):  # every stage: what `sipe sync` asks before each ./run.sh
        status = measure(["dvc", "status"], repo, check=False)
        results[f"dvc_status_{attempt}"] = {"wall_s": status["wall_s"], "peak_rss_mb": status["peak_rss_mb"]}
    sync = run_sipe(["sync"], repo)
    results["sipe_sync"] = {"wall_s": sync["wall_s"], "peak_rss_mb": sync["peak_rss_mb"]}
    print(results, flush=True)
    return {"outputs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sipe-voc-scale"))
    parser.add_argument("--phases", nargs="+", default=["data", "plan", "outputs"],
                        choices=("data", "plan", "outputs"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 1.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--map-kb", type=int, default=600, help="size of one map file (KiB)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"cpus": os.cpu_count()}
    if "data" in args.phases:
        results.update(data_phase(args.work, args.fractions, args.workers))
    if "plan" in args.phases:
        results.update(plan_phase(args.work))
    if "outputs" in args.phases:
        results.update(outputs_phase(args.work, args.map_kb))
    print(f"written: {record('voc_scale', results)}")


if __name__ == "__main__":
    main()
