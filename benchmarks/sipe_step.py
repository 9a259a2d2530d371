"""Benchmark: one SIPE training step vs the same backbone's plain classification step (CPU).

Both steps share the gradient path of docs/method.md B.1 (stem..layer2 frozen, gradient cut after layer2,
layer3/4 and a 1×1 classifier trained); the SIPE step adds the side branches, seed locating,
prototypes, IS-CAM and the GSC loss. Each configuration runs in its own spawned process so that
peak RSS (ru_maxrss) is measured separately. Prints the time ratio and the peak-memory ratio
(issue target: ≤ 1.15× time, ≤ 1.2× memory; the authors' code measured 2.4× and 1.9×), then
IS-CAM inference images/s (4 scales + flip).

    python benchmarks/sipe_step.py [--backbone resnet50] [--batch 2] [--crop 512] [--steps 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def _step_worker(mode: str, backbone: str, batch: int, crop: int, steps: int, queue) -> None:
    from sipe import ipe
    from sipe.data.classification import valid_mask_from
    from sipe.models import SIPENet
    from sipe.models.backbone import backbone_stages

    torch.manual_seed(0)
    num_classes = 20
    model = SIPENet(num_classes, backbone=backbone, weights=None).train()
    images = torch.randn(batch, 3, crop, crop)
    labels = torch.zeros(batch, num_classes)
    labels[:, [3, 14]] = 1
    valid = valid_mask_from(torch.ones(batch, crop, crop), labels)  # as the train-sipe stage builds it
    params = [p for group in model.parameter_groups() for p in group]

    def sipe_step():
        out = model(images, valid)
        loss = F.multilabel_soft_margin_loss(out["score"], labels) + ipe.gsc_loss(out["cam"], out["is_cam"])
        loss.backward()

    def classification_step():
        s0, s1, s2, s3, s4 = backbone_stages(model.backbone)
        x = s4(s3(s2(s1(s0(images))).detach()))
        loss = F.multilabel_soft_margin_loss(model.classifier(x).mean(dim=(2, 3)), labels)
        loss.backward()

    step = sipe_step if mode == "sipe" else classification_step
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        for p in params:
            p.grad = None
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"median_s": statistics.median(times[1:]), "min_s": min(times[1:]),
               "peak_rss_mb": peak / 1024, "step_rss_mb": (peak - rss_before) / 1024})


def measure(mode: str, args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_step_worker, args=(mode, args.backbone, args.batch, args.crop, args.steps, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def inference_rate(backbone: str, size: tuple[int, int], images: int) -> float:
    from sipe.maps import multiscale_maps
    from sipe.models import SIPENet

    torch.manual_seed(0)
    model = SIPENet(20, backbone=backbone, weights=None).eval()
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    label = np.zeros(21, dtype=np.float32)
    label[[0, 4]] = 1
    multiscale_maps(model, image, label)
    start = time.perf_counter()
    for _ in range(images):
        multiscale_maps(model, image, label)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    print(f"{args.backbone}, batch {args.batch}, crop {args.crop}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps after one warm-up")
    results = {mode: measure(mode, args) for mode in ("classification", "sipe")}
    for mode, r in results.items():
        print(f"  {mode:>14}: {r['median_s']:.2f} s/step (min {r['min_s']:.2f}), peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(+{r['step_rss_mb']:.0f} MB over the built model)")
    cls, sipe = results["classification"], results["sipe"]
    print(f"time ratio SIPE/classification: {sipe['median_s'] / cls['median_s']:.2f}x (min-based "
          f"{sipe['min_s'] / cls['min_s']:.2f}x); peak RSS ratio: {sipe['peak_rss_mb'] / cls['peak_rss_mb']:.2f}x; "
          f"step memory ratio: {sipe['step_rss_mb'] / cls['step_rss_mb']:.2f}x")
    rate = inference_rate(args.backbone, (375, 500), images=2)
    print(f"IS-CAM inference ({args.backbone}, 500x375, scales 1.0/0.5/1.5/2.0 + flip): {rate:.2f} images/s")


if __name__ == "__main__":
    main()
