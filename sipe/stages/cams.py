"""Localisation-map stages: ``make-cams`` (IS-CAM + CAM inference, sharded), ``cam-overlays`` and ``eval-cams``.

``make-cams`` is the authors' make_cam on the ``train_aug`` split, ``eval-cams`` their eval_cam on the
``train`` split (docs/method.md D; H.1 item 1: trainaug, not train), plus the CAM baseline with a swept
constant background threshold (the paper's Fig. 8).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sipe.data.manifest import DatasetManifest
from sipe.errors import SipeError, first_offenders
from sipe.io import IGNORE_INDEX, atomic_path, read_image, read_mask, write_json
from sipe.maps import (DEFAULT_SCALES, cam_foreground, check_scales, find_maps, is_cam_labels, label_vector,
                       load_maps, map_keys, map_path, multiscale_maps, save_maps, select_present, threshold_foreground)
from sipe.metrics import ConfusionMatrix, write_scores
from sipe.stages.shards import data_input, gather, run_record, shard_ids, sharded_output
from sipe.viz import cam_vs_is_cam, save_png, stack_rows, with_colour_bar

log = logging.getLogger(__name__)


def _image_labels(manifest: DatasetManifest, ids: Sequence[str]) -> dict[str, tuple[int, ...]]:
    labels = manifest.class_labels()
    missing = [i for i in ids if i not in labels]
    if missing:
        raise SipeError(f"{manifest.labels_file}: no image-level labels for ids: {first_offenders(missing)}")
    return {i: labels[i] for i in ids}


def write_maps(model, manifest: DatasetManifest, role: str, ids: Sequence[str], out_dir: Path,
               scales: Sequence[float] = DEFAULT_SCALES, desc: str = "make-cams", show_progress: bool = True) -> int:
    """Run :func:`multiscale_maps` on every id and write ``out_dir/<id>.npz`` (each atomically).

    Every id gets a fresh file (nothing is skipped, existing files are overwritten). Returns the
    number of files written.
    """
    from tqdm import tqdm

    labels = _image_labels(manifest, ids)
    num_classes = manifest.num_classes
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for image_id in tqdm(ids, desc=desc, unit="img", mininterval=2.0, disable=not show_progress):
        image = read_image(manifest.image_path(role, image_id))
        keys = map_keys(labels[image_id])
        cam, is_cam = multiscale_maps(model, image, label_vector(keys[1:], num_classes), scales)
        cam, is_cam = select_present(keys, cam, is_cam)
        save_maps(map_path(out_dir, image_id), keys, cam, is_cam)
        written += 1
    return written


def make_cams(params: dict, data: Path, model_path: Path, out_dir: Path, role: str = "train_aug",
              shard: tuple[int, int] = (0, 1), workers: int = 1, device=None) -> None:
    """IS-CAM and CAM maps of shard ``shard`` = (i, n) of split ``role``: ``out_dir/<id>.npz`` for ids[i::n].

    Settings: ``params['cams']['scales']`` (docs/method.md A.5: 1.0, 0.5, 1.5, 2.0). ``workers`` sets the
    torch CPU threads; ``device`` defaults to CUDA when available, else CPU.
    """
    from sipe.device import select_device, torch_threads
    from sipe.models.sipe_net import load_sipe

    manifest = DatasetManifest.load(data)
    ids = shard_ids(manifest.ids(role), shard)
    scales = check_scales(params.get("cams", {}).get("scales"))
    device = select_device(device)
    with torch_threads(workers):
        model = load_sipe(model_path, num_classes=manifest.num_classes - 1, device=device)
        model.eval()
        start = time.perf_counter()
        run = run_record("make-cams", {"role": role, "scales": list(scales)}, model=model_path, data=data_input(data))
        with sharded_output([Path(out_dir)], shard, ids, run):
            count = write_maps(model, manifest, role, ids, Path(out_dir), scales,
                               desc=f"make-cams {role} shard {shard[0] + 1}-of-{shard[1]}")
        elapsed = time.perf_counter() - start
    if shard[1] == 1:  # unsharded (DVC, people): this run is also the gather step
        gather(Path(out_dir), manifest.ids(role), ".npz", role)
    log.info("make-cams: %d maps of %s shard %d-of-%d in %s (%.1fs, %.2f images/s, %s, %d threads)", count, role,
             shard[0] + 1, shard[1], out_dir, elapsed, count / elapsed if elapsed else math.inf, device, workers)


def cam_overlays(params: dict, data: Path, maps_dir, out_png: Path) -> None:
    """CAM vs IS-CAM sheet of the first ``params['cams']['overlay_samples']`` ids of the ``train`` split (PNG)."""
    manifest = DatasetManifest.load(data)
    count = int(params["cams"]["overlay_samples"])
    if count < 1:
        raise SipeError(f"cams.overlay_samples: need at least 1, got {count}")
    ids = manifest.ids("train")[:count]
    paths = find_maps(maps_dir, ids)
    rows = []
    for image_id in ids:
        image = read_image(manifest.image_path("train", image_id))
        keys, cam, is_cam = load_maps(paths[image_id])
        if is_cam.shape[1:] != image.shape[:2]:
            raise SipeError(f"{paths[image_id]}: map size {tuple(is_cam.shape[1:])} != image size "
                            f"{tuple(image.shape[:2])} of {image_id}")
        rows.append(cam_vs_is_cam(image, keys, cam, is_cam, manifest.classes, image_id))
    save_png(out_png, with_colour_bar(stack_rows(rows)))


def _sweep_plot(path: Path, thresholds: Sequence[float], mious: Sequence[float], best: float,
                is_cam_miou: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(thresholds, [100 * m for m in mious], marker="o", label="CAM + background threshold")
    if not math.isnan(is_cam_miou):
        ax.axhline(100 * is_cam_miou, color="tab:red", linestyle="--", label="IS-CAM (no threshold)")
    ax.axvline(best, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU (%)")
    ax.set_title("Localisation maps on train")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png")


def eval_cams(params: dict, data: Path, maps_dir, out_dir: Path, role: str = "train") -> dict:
    """Score the maps against the GT masks of split ``role`` (docs/method.md D eval_cam), in one pass.

    Writes into ``out_dir``: ``is_cam.json`` + ``is_cam_per_class.csv`` (keys[argmax IS-CAM]);
    ``cam_threshold_sweep.csv`` (threshold, mIoU) and ``.png`` for the CAM baseline over
    ``params['eval_cams']['bg_thresholds']``; ``cam.json`` + ``cam_per_class.csv`` at the best
    threshold (the lowest one on a tie); ``summary.json`` (``cam_mIoU``, ``cam_best_threshold``,
    ``is_cam_mIoU``), which is also returned. ``maps_dir`` may be one folder or a list (shards).
    """
    manifest = DatasetManifest.load(data)
    thresholds = [float(t) for t in params["eval_cams"]["bg_thresholds"]]
    if not thresholds:
        raise SipeError("eval_cams.bg_thresholds: need at least one threshold")
    ids = manifest.ids(role)
    paths = find_maps(maps_dir, ids)  # every map is there before the pass starts
    num_classes = manifest.num_classes

    is_cam_cm = ConfusionMatrix(num_classes, IGNORE_INDEX, pred_ignore="error")
    cam_cms = [ConfusionMatrix(num_classes, IGNORE_INDEX, pred_ignore="error") for _ in thresholds]
    for image_id in ids:
        mask_file = manifest.mask_path(role, image_id)
        gt = read_mask(mask_file)
        keys, cam, is_cam = load_maps(paths[image_id])
        if is_cam.shape[1:] != gt.shape:
            raise SipeError(f"{paths[image_id]}: map size {tuple(is_cam.shape[1:])} != GT size {gt.shape} "
                            f"of {mask_file}")
        if keys[-1] >= num_classes:
            raise SipeError(f"{paths[image_id]}: class id {int(keys[-1])} outside the dataset's "
                            f"{num_classes} classes")
        is_cam_cm.update(gt, is_cam_labels(keys, is_cam), where=image_id)
        fg_max, fg_label = cam_foreground(keys, cam)
        for cm, threshold in zip(cam_cms, thresholds):
            cm.update(gt, threshold_foreground(fg_max, fg_label, threshold), where=image_id)

    is_cam_scores = is_cam_cm.scores(manifest.classes)
    cam_scores = [cm.scores(manifest.classes) for cm in cam_cms]
    mious = [s["mIoU"] for s in cam_scores]
    if all(math.isnan(m) for m in mious):
        raise SipeError(f"{manifest.mask_path(role, ids[0]).parent}: no GT pixel to score in split {role!r}")
    best = int(np.nanargmax(np.asarray(mious, dtype=np.float64)))  # first maximum: the lowest threshold

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_scores(is_cam_scores, out_dir / "is_cam.json", out_dir / "is_cam_per_class.csv")
    sweep = pd.DataFrame({"threshold": thresholds, "mIoU": mious})
    with atomic_path(out_dir / "cam_threshold_sweep.csv") as tmp:
        sweep.to_csv(tmp, index=False)
    write_scores(cam_scores[best], out_dir / "cam.json", out_dir / "cam_per_class.csv")
    _sweep_plot(out_dir / "cam_threshold_sweep.png", thresholds, mious, thresholds[best], is_cam_scores["mIoU"])

    def number(value):
        return None if value is None or math.isnan(value) else float(value)

    result = {"cam_mIoU": number(mious[best]), "cam_best_threshold": thresholds[best],
              "is_cam_mIoU": number(is_cam_scores["mIoU"])}
    write_json(out_dir / "summary.json", result)
    log.info("eval-cams on %s (%d images): IS-CAM mIoU %.4f, CAM mIoU %.4f at background threshold %.2f",
             role, len(ids), is_cam_scores["mIoU"], mious[best], thresholds[best])
    return result
