"""Benchmark: cost per image and per training step of every network stage at the paper's VOC settings
(docs/scaling.md), on this machine's CPU.

Runs the real ``sipe`` commands, in the order of the DAG, in a scratch copy of the repository configured by
``benchmarks/rehearsal.py`` (``sipe preset voc``; VOC-like images of 500 px long side, 20 classes), on a
small set: ``--images`` train_aug images (also the split whose maps and labels are made) and ``--val``
val images. The networks start from random weights (``weights: none``): the same cost as ImageNet or COCO
initialisation, which this machine cannot download; DeepLab's frozen-BN ResNet-101 diverges from random
weights, so its learning rate is 1e-8 with gradient clipping (the same work per step). Trainings are cut to
a few steps:

* train-sipe: resnet50, batch 16, crop 512; train-irn: resnet50, batch 32, crop 512;
  train-deeplab: resnet101, batch 5 × iter_size 2, crop 321, MSC. Per step: the median step time in
  ``train/steps.csv`` after the first step (warm-up);
* make-cams (4 scales + flip, CAM and IS-CAM), crf, ir-labels, pseudo-labels (IRN forward at pad 512 +
  random walk), segment (resnet101, MSC over 5 scales, + denseCRF): wall time of the command / images,
  start-up included.

    python benchmarks/paper_costs.py [--work /tmp/sipe-paper-costs] [--images 32] [--val 16] [--steps 4]

Results: benchmarks/results/paper_costs.json. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

from rehearsal import configure, copy_repo, record, run_sipe

DATA, RES = "data/synthetic", "results/synthetic"


def cpu_gflops(size: int = 512, repeats: int = 3) -> float:
    """This CPU's sustained GFLOP/s on a torchvision resnet50 forward of one ``size``² image (FLOPs counted by
    torch's FlopCounterMode, time the median of ``repeats``): the yardstick of the GPU estimates."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    model = torchvision.models.resnet50().eval()
    image = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(image)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - start)
    return counter.get_total_flops() / statistics.median(times) / 1e9


def reference(repo: Path, data: str) -> dict:
    """The settings the costs were measured at, and the mean image size in pixels, for ``sipe estimate``."""
    from PIL import Image

    from sipe.config import load_params

    p = load_params(repo / "params.yaml")
    images = sorted((repo / data / "JPEGImages").glob("*.jpg"))
    sizes = []
    for path in images:
        with Image.open(path) as image:
            sizes.append(image.size[0] * image.size[1])
    return {"pixels": round(statistics.mean(sizes)), "sipe_backbone": p["sipe"]["backbone"],
            "sipe_batch": p["sipe"]["batch_size"], "sipe_crop": p["sipe"]["crop"], "cams_scales": p["cams"]["scales"],
            "irn_batch": p["irn"]["batch_size"], "irn_crop": p["irn"]["crop"],
            "deeplab_backbone": p["deeplab"]["backbone"], "deeplab_batch": p["deeplab"]["batch_size"],
            "deeplab_iter_size": p["deeplab"]["iter_size"], "deeplab_crop": p["deeplab"]["crop"],
            "deeplab_scales": p["deeplab"]["scales"], "cpu_gflops": round(cpu_gflops(), 1)}


def _step_seconds(train_dir: Path) -> dict:
    """Steps, the first step's time and the median time of the later ones (``time_s`` is the time since the start)."""
    with open(train_dir / "train" / "steps.csv") as fh:
        elapsed = [float(row["time_s"]) for row in csv.DictReader(fh)]
    steps = [b - a for a, b in zip([0.0, *elapsed], elapsed)]
    return {"steps": len(steps), "first_step_s": round(steps[0], 2),
            "s_per_step": round(statistics.median(steps[1:] if len(steps) > 1 else steps), 2)}


def _stage(result: dict, images: int) -> dict:
    return {"wall_s": result["wall_s"], "peak_rss_mb": result["peak_rss_mb"], "images": images,
            "s_per_image": round(result["wall_s"] / images, 2)}


def _training(result: dict, out: Path) -> dict:
    return {"wall_s": result["wall_s"], "peak_rss_mb": result["peak_rss_mb"], **_step_seconds(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sipe-paper-costs"))
    parser.add_argument("--images", type=int, default=32, help="train_aug images (at least irn.batch_size, 32)")
    parser.add_argument("--val", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="steps of each training")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    repo = copy_repo(args.work)
    n, w = args.images, str(args.workers)
    configure(repo, {"train_aug": n, "train": n, "val": args.val}, weights="none",
              **{"sipe.epochs": max(1, args.steps * 16 // n), "irn.epochs": max(1, args.steps * 32 // n),
                 "deeplab.iterations": args.steps, "deeplab.lr": "1.0e-8", "deeplab.grad_clip": 1.0})
    common = ["--params", "params.yaml", "--data", DATA, "--workers", w]
    results = {"cpus": os.cpu_count(), "images": n, "val_images": args.val,
               "torch_threads": os.environ.get("OMP_NUM_THREADS", "default")}
    run_sipe(["prepare-data", "--params", "params.yaml", "--out", DATA, "--workers", w], repo)
    results["reference"] = reference(repo, DATA)
    print("reference", results["reference"], flush=True)

    def step(name: str, command: list[str], summarise) -> None:
        results[name] = summarise(run_sipe(command, repo))
        print(name, results[name], flush=True)

    step("train_sipe", ["train-sipe", *common, "--out", f"{RES}/sipe"], lambda r: _training(r, repo / RES / "sipe"))
    step("make_cams", ["make-cams", *common, "--model", f"{RES}/sipe/model.pt", "--out", f"{RES}/sipe/cams",
                       "--role", "train_aug"], lambda r: _stage(r, n))
    maps = ["--maps", f"{RES}/sipe/cams"]
    step("crf", ["crf", *common, *maps, "--out", f"{RES}/refine/crf"], lambda r: _stage(r, n))
    step("ir_labels", ["ir-labels", *common, *maps, "--crf", f"{RES}/refine/crf", "--out", f"{RES}/refine/ir_labels"],
         lambda r: _stage(r, n))
    step("train_irn", ["train-irn", *common, "--labels", f"{RES}/refine/ir_labels", "--out", f"{RES}/refine/irn"],
         lambda r: _training(r, repo / RES / "refine" / "irn"))
    step("pseudo_labels", ["pseudo-labels", *common, *maps, "--model", f"{RES}/refine/irn/model.pt",
                           "--out", f"{RES}/refine/pseudo_labels"], lambda r: _stage(r, n))
    step("train_deeplab", ["train-deeplab", *common, "--labels", f"{RES}/refine/pseudo_labels",
                           "--out", f"{RES}/deeplab"], lambda r: _training(r, repo / RES / "deeplab"))
    step("segment", ["segment", *common, "--model", f"{RES}/deeplab/model.pt", "--out", f"{RES}/deeplab/val",
                     "--split", "val"], lambda r: _stage(r, args.val))
    results["checkpoint_mb"] = {name: round((repo / RES / path).stat().st_size / 2**20, 1) for name, path in
                                (("sipe", "sipe/model.pt"), ("irn", "refine/irn/model.pt"),
                                 ("deeplab", "deeplab/model.pt"))}
    print(f"written: {record('paper_costs', results)}")


if __name__ == "__main__":
    main()
