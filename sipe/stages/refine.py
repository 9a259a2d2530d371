"""Per-image refinement stages on ``train_aug``, each sharded like make-cams (docs/method.md E, F.1, F.5).

* ``crf``: ``refine/crf/<id>.png`` = keys[CRF(argmax IS-CAM)], the "+dCRF" label map and
  ``fg_conf`` of the IR labels (docs/method.md E, F.1 step 1);
* ``ir-labels``: ``refine/ir_labels/<id>.png``, confident fg / confident bg / 255, from the crf
  stage's map and one more CRF pass with the background channel attenuated (docs/method.md F.1);
* ``pseudo-labels``: ``refine/pseudo_labels/<id>.png``, the IRN random walk (docs/method.md F.5).

Every stage checks its inputs before it writes anything (a map for every id, complete input
folders), writes each PNG atomically inside :func:`sipe.stages.shards.sharded_output` (the folder is
marked incomplete until its shard record is written) and, when unsharded, also gathers
(``index.json``). The CRF stages run images on a pool of ``workers`` processes; the pseudo-label
stage runs torch with ``workers`` threads.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sipe.maps import find_maps, load_maps
from sipe.data.manifest import DatasetManifest
from sipe.device import select_device
from sipe.errors import SipeError, first_offenders
from sipe.io import check_complete, read_image, read_label_of_size, save_label_png
from sipe.models.irn import load_irn
from sipe.parallel import parallel_map
from sipe.refine.crf import CRFSettings
from sipe.refine.ir_labels import confident_labels, crf_label_map
from sipe.refine.pseudo_labels import boundary_map, rw_label_map, walk_scores
from sipe.stages.shards import data_input, gather, run_record, shard_ids, sharded_output

log = logging.getLogger(__name__)

ROLE = "train_aug"  # every label folder covers train_aug (IRN and DeepLab train on it); train ⊂ train_aug is scored
LABEL_SUFFIX = ".png"


def label_path(labels_dir: Path, image_id: str) -> Path:
    return Path(labels_dir) / f"{image_id}{LABEL_SUFFIX}"


def image_and_maps(image_path: Path, map_file: Path, num_classes: int):
    """(image uint8 [H,W,3], keys, is_cam float32 [K+1,H,W]) of one id; one-line :class:`SipeError` when the
    map's size differs from the image's or its keys name a class the dataset does not have."""
    image = read_image(image_path)
    keys, _, is_cam = load_maps(map_file)
    if is_cam.shape[1:] != image.shape[:2]:
        raise SipeError(f"{map_file}: map size {tuple(is_cam.shape[1:])} != image size {image.shape[:2]} of "
                        f"{image_path}")
    if keys[-1] >= num_classes:
        raise SipeError(f"{map_file}: class id {int(keys[-1])} outside the dataset's {num_classes} classes")
    return image, keys, is_cam.astype(np.float32)


def _crf_task(task: tuple) -> None:
    image_path, map_file, out_file, settings, num_classes = task
    image, keys, is_cam = image_and_maps(image_path, map_file, num_classes)
    save_label_png(out_file, crf_label_map(image, keys, is_cam, settings))


def _ir_task(task: tuple) -> float:
    """Write one image's IR labels; return the fraction of its pixels that got a confident label."""
    image_path, map_file, fg_file, out_file, settings, bg_attenuation, num_classes = task
    image, keys, is_cam = image_and_maps(image_path, map_file, num_classes)
    fg_conf = read_label_of_size(fg_file, image.shape[:2], image_path)
    bg_conf = crf_label_map(image, keys, is_cam, settings, bg_scale=bg_attenuation)
    labels = confident_labels(fg_conf, bg_conf)
    save_label_png(out_file, labels)
    return float(np.mean(labels != 255))


def _shard(data: Path, maps_dir: Path, shard: tuple[int, int]) -> tuple[DatasetManifest, list[str], list[str], dict]:
    manifest = DatasetManifest.load(data)
    all_ids = manifest.ids(ROLE)
    ids = shard_ids(all_ids, shard)
    return manifest, all_ids, ids, find_maps(maps_dir, ids)  # every map is there before anything is written


def _finish(name: str, out_dir: Path, shard: tuple[int, int], ids: list[str], all_ids: list[str], elapsed: float,
            workers: int) -> None:
    if shard[1] == 1:  # unsharded (DVC, people): this run is also the gather step
        gather(out_dir, all_ids, LABEL_SUFFIX, ROLE)
    log.info("%s: %d label maps of %s shard %d-of-%d in %s (%.1f s, %.2f images/s, %d workers)", name, len(ids), ROLE,
             shard[0] + 1, shard[1], out_dir, elapsed, len(ids) / elapsed if elapsed else math.inf, workers)


def _run(name: str, task: Callable, tasks: Sequence[tuple], workers: int, shard: tuple[int, int]) -> tuple[list, float]:
    start = time.perf_counter()
    results = parallel_map(task, tasks, workers, desc=f"{name} shard {shard[0] + 1}-of-{shard[1]}")
    return results, time.perf_counter() - start


def crf_labels(params: dict, data: Path, maps_dir: Path, out_dir: Path, shard: tuple[int, int] = (0, 1),
               workers: int = 1) -> None:
    """Stage ``crf``: ``out_dir/<id>.png`` = keys[CRF(argmax IS-CAM)] for the ids of ``shard`` (docs/method.md E)."""
    manifest, all_ids, ids, maps = _shard(data, maps_dir, shard)
    settings = CRFSettings.from_params(params["crf"])
    out_dir = Path(out_dir)
    tasks = [(manifest.image_path(ROLE, i), maps[i], label_path(out_dir, i), settings, manifest.num_classes)
             for i in ids]
    run = run_record("crf", {"crf": params["crf"]}, maps=maps_dir, data=data_input(data))
    with sharded_output([out_dir], shard, ids, run):
        _, elapsed = _run("crf", _crf_task, tasks, workers, shard)
    _finish("crf", out_dir, shard, ids, all_ids, elapsed, workers)


def ir_labels(params: dict, data: Path, maps_dir: Path, crf_dir: Path, out_dir: Path,
              shard: tuple[int, int] = (0, 1), workers: int = 1) -> None:
    """Stage ``ir-labels``: ``out_dir/<id>.png`` = confident labels (docs/method.md F.1) from the crf stage's map
    (``fg_conf``) and a CRF pass with the background channel × ``ir_labels.bg_attenuation`` (``bg_conf``)."""
    manifest, all_ids, ids, maps = _shard(data, maps_dir, shard)
    check_complete(crf_dir)
    missing = [i for i in ids if not label_path(crf_dir, i).is_file()]
    if missing:
        raise SipeError(f"{crf_dir}: no CRF label map for {len(missing)} of {len(ids)} ids: "
                        f"{first_offenders(missing)} (run crf first)")
    settings = CRFSettings.from_params(params["crf"])
    attenuation = float(params["ir_labels"]["bg_attenuation"])
    out_dir = Path(out_dir)
    tasks = [(manifest.image_path(ROLE, i), maps[i], label_path(crf_dir, i), label_path(out_dir, i), settings,
              attenuation, manifest.num_classes) for i in ids]
    run = run_record("ir-labels", {"crf": params["crf"], "ir_labels": params["ir_labels"]}, maps=maps_dir,
                     crf=crf_dir, data=data_input(data))
    with sharded_output([out_dir], shard, ids, run):
        coverage, elapsed = _run("ir-labels", _ir_task, tasks, workers, shard)
    empty = [i for i, c in zip(ids, coverage) if c == 0.0]
    if empty:
        log.warning("ir-labels: %d images have no confident pixel (all 255), IRN learns nothing from them: %s",
                    len(empty), first_offenders(empty))
    log.info("ir-labels: mean confident fraction %.3f", float(np.mean(coverage)) if coverage else math.nan)
    _finish("ir-labels", out_dir, shard, ids, all_ids, elapsed, workers)


def pseudo_labels(params: dict, data: Path, maps_dir: Path, model_path: Path, out_dir: Path,
                  shard: tuple[int, int] = (0, 1), workers: int = 1, device: str | None = None) -> None:
    """Stage ``pseudo-labels``: ``out_dir/<id>.png`` by the IRN random walk (docs/method.md F.5), torch on ``workers`` threads."""
    manifest, all_ids, ids, maps = _shard(data, maps_dir, shard)
    settings = params["pseudo_labels"]
    device = select_device(device)
    torch.set_num_threads(max(1, workers))
    model = load_irn(model_path, backbone=params["sipe"]["backbone"], device=device)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    run = run_record("pseudo-labels", {"pseudo_labels": settings, "backbone": params["sipe"]["backbone"]},
                     maps=maps_dir, model=model_path, data=data_input(data))
    with sharded_output([out_dir], shard, ids, run):
        for image_id in tqdm(ids, desc=f"pseudo-labels shard {shard[0] + 1}-of-{shard[1]}", unit="img",
                             mininterval=2.0):
            image_path = manifest.image_path(ROLE, image_id)
            image, keys, is_cam = image_and_maps(image_path, maps[image_id], manifest.num_classes)
            edge = boundary_map(model, image, settings["pad_size"])
            scores = walk_scores(torch.from_numpy(is_cam).to(device), edge, settings["cam_power"],
                                 settings["radius"], settings["beta"], settings["exp_times"])
            save_label_png(label_path(out_dir, image_id), rw_label_map(keys, scores, *image.shape[:2]))
    _finish("pseudo-labels", out_dir, shard, ids, all_ids, time.perf_counter() - start, workers)


