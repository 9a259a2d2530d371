"""Benchmark: the random walk of docs/method.md F.5 on a VOC-sized map (500×375 image → 94×125 at stride 4).

Runs ``sipe.refine.random_walk.propagate_to_edge`` (radius 5, β 10, 2^8 = 256 sparse averaging
steps, float32) in a fresh spawned process per thread count, so that peak RSS (ru_maxrss) is that
run's alone, and prints seconds (the sparse matrix build and the walk) and the peak memory above
the process's baseline, next to what the authors' dense form costs for the same map (docs/method.md F.6:
16·n³ FLOP for T^256 by 8 squarings of an n × n matrix, n² floats per matrix). Issue target: ≤ 1 s.

    python benchmarks/random_walk.py [--height 94] [--width 125] [--channels 21] [--threads 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time


def _worker(height: int, width: int, channels: int, threads: int, repeats: int, queue) -> None:
    import torch

    from sipe.refine.random_walk import propagate_to_edge, transition_matrix

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    cams = torch.rand(channels, height, width, generator=generator)
    edge = torch.rand(height, width, generator=generator) ** 4
    propagate_to_edge(cams[:, :8, :8], edge[:8, :8], exp_times=1)  # load kernels before the baseline
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    totals, builds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        transition_matrix(edge)
        builds.append(time.perf_counter() - start)
        start = time.perf_counter()
        propagate_to_edge(cams, edge)
        totals.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"threads": threads, "median_s": statistics.median(totals), "min_s": min(totals),
               "build_s": statistics.median(builds), "peak_mb": (peak - baseline) / 1024})


def measure(height: int, width: int, channels: int, threads: int, repeats: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(height, width, channels, threads, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=94)
    parser.add_argument("--width", type=int, default=125)
    parser.add_argument("--channels", type=int, default=21)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.height * args.width
    print(f"map {args.height}x{args.width} (n = {n}), {args.channels} channels, radius 5, beta 10, 256 steps, float32")
    print(f"authors' dense form: T^256 by 8 squarings = 16 n^3 = {16 * n**3 / 1e12:.1f} TFLOP; "
          f"one n x n float32 matrix = {4 * n * n / 2**30:.2f} GiB (3-4 alive at the peak)")
    for threads in args.threads:
        r = measure(args.height, args.width, args.channels, threads, args.repeats)
        print(f"sparse walk, {r['threads']} thread(s): {r['median_s']:.3f} s median ({r['min_s']:.3f} s best; "
              f"matrix build {r['build_s']:.3f} s), peak memory +{r['peak_mb']:.1f} MB")


if __name__ == "__main__":
    main()
