"""Benchmark: label-based denseCRF (docs/method.md E) images/s on 1 vs 2 worker processes.

Each image is a smooth random colour field with a few blobs and a label map of K+1 = 3 labels that
roughly follows the blobs (as argmax IS-CAM does); the CRF runs with the reference's settings
(10 iterations, Gaussian 3/3, bilateral 50/5/10) through the same process pool as the crf and
ir-labels stages (``sipe.data.validate.parallel_map``).

    python benchmarks/crf.py [--height 375] [--width 500] [--images 24] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sipe.parallel import parallel_map
from sipe.refine.crf import crf_inference_label


def make_inputs(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.float32)
    for c in range(3):  # smooth background gradient
        image[..., c] = 60 + 60 * np.sin(xs / width * rng.uniform(1, 4) + c) + 40 * np.cos(ys / height * rng.uniform(1, 4))
    labels = np.zeros((height, width), np.int64)
    for label in (1, 2):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        radius = rng.uniform(0.1, 0.25) * min(height, width)
        blob = (ys - cy) ** 2 + (xs - cx) ** 2 < radius**2
        image[blob] = rng.uniform(0, 255, 3)
        shifted = (ys - cy - 0.15 * radius) ** 2 + (xs - cx) ** 2 < (0.9 * radius) ** 2  # a slightly wrong map
        labels[shifted] = label
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def _task(inputs: tuple[np.ndarray, np.ndarray]) -> int:
    image, labels = inputs
    return int(crf_inference_label(image, labels, 3).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    inputs = [make_inputs(args.height, args.width, seed) for seed in range(args.images)]
    print(f"{args.images} images of {args.height}x{args.width}, 3 labels, 10 mean-field iterations")
    for workers in args.workers:
        start = time.perf_counter()
        parallel_map(_task, inputs, workers)
        elapsed = time.perf_counter() - start
        print(f"{workers} process(es): {args.images / elapsed:.2f} images/s ({elapsed:.2f} s)")


if __name__ == "__main__":
    main()
