"""Shared by the scale benchmarks (docs/scaling.md): a scratch copy of the repository configured for the
VOC-sized synthetic set, and one measured command (wall time and peak memory).

The VOC-sized set: 20 classes, VOC's split sizes (10,582 train_aug, 1,464 train, 1,449 val) and VOC-like
image sizes (long side 500 px, short side 250-500 px, one in four portrait; ``synthetic.sizes: voc``).
The other settings are the paper's (``sipe preset voc``) except that the ImageNet and COCO weights this
machine cannot download are replaced by ``pretrain`` (same networks, same cost).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VOC_SPLITS = {"train_aug": 10582, "train": 1464, "val": 1449}


def copy_repo(dest: Path) -> Path:
    """Copy the repository's tracked and untracked (not ignored) files into ``dest`` (replaced)."""
    if dest.exists():
        shutil.rmtree(dest)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def voc_sizes(fraction: float) -> dict:
    """``fraction`` of VOC's split sizes (at least one image each)."""
    return {split: max(1, round(count * fraction)) for split, count in VOC_SPLITS.items()}


def configure(repo: Path, sizes: dict, weights: str = "pretrain", **overrides) -> None:
    """Write the rehearsal's params.yaml in ``repo``: ``sipe preset voc``, then the synthetic set with VOC's
    classes and image sizes and ``sizes`` images per split, and ``weights`` for both networks
    (``pretrain`` or ``none``); ``overrides`` are dotted keys, with values as Python values or YAML text."""
    run_sipe(["preset", "voc"], repo)
    from sipe.io import round_trip_yaml

    rt = round_trip_yaml()
    params = rt.load((repo / "params.yaml").read_text())
    params["dataset"] = "synthetic"
    params["synthetic"].update(num_classes=20, min_side=250, max_side=500, sizes="voc", **sizes)
    settings = {"sipe.weights": weights, "deeplab.weights": weights, "deeplab.style": "torchvision",
                **overrides}
    for key, value in settings.items():
        section, name = key.rsplit(".", 1)
        node = params
        for part in section.split("."):
            node = node[part]
        node[name] = rt.load(value) if isinstance(value, str) else value  # "1.0e-8" stays a YAML 1.1 float
    with open(repo / "params.yaml", "w") as fh:
        rt.dump(params, fh)


def run_sipe(args: list[str], cwd: Path, **kwargs) -> dict:
    """``python -m sipe ARGS`` in ``cwd``, measured (:func:`measure`)."""
    return measure([sys.executable, "-m", "sipe", *args], cwd, **kwargs)


def measure(command: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> dict:
    """Run ``command``; its wall time (s) and the peak resident memory (MB) of its largest process (the
    command or one of its worker processes). Raises when it fails (unless not ``check``)."""
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   **(env or {})}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if check and os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024), "output": output}


def record(name: str, results: dict) -> Path:
    """Merge ``results`` into ``benchmarks/results/<name>.json`` (the figures docs/scaling.md quotes)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(results)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return path
