"""Stage ``train-irn``: train IRN on the IR labels of ``train_aug`` (SPEC F.2–F.4).

The backbone is SIPE's (``sipe.backbone`` with ``sipe.weights``; the ``pretrain`` stand-in with
``--init``) and stays frozen; the edge branch learns at ``irn.lr``, the displacement branch at
``irn.lr · irn.displacement_lr_mult``, by SGD with the poly schedule and the reference's momentum
quirk, no gradient clipping, ``max_step = (len(train_aug) // batch_size) · epochs`` (drop_last).
Resumable and logged by :func:`sipe.training.fit`, like train-sipe.

Outputs in ``out_dir``::

    model.pt            IRN weights (backbone included) + config, written last
    train/steps.csv     step, epoch, lr, loss and its five terms, grad_norm, time_s
    train/train.json    final losses, steps, speed, settings, library versions
    train/loss.png      loss curves and the lr schedule
    resume.pt           resumable checkpoint while training runs; deleted at the end
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Callable

import torch

from sipe.data.manifest import DatasetManifest
from sipe.errors import ConfigError
from sipe.io import write_json
from sipe.models.checkpoint import save_model
from sipe.models.irn import IRN
from sipe.refine.affinity_dataset import AffinityDataset
from sipe.refine.irn_loss import irn_losses
from sipe.refine.path_index import PathIndex, affinity_labels, pair_displacement, path_affinity
from sipe.training import TrainConfig, fit, make_sgd, plot_losses, result_summary, seed_everything

log = logging.getLogger(__name__)

MODEL_NAME = "model.pt"
RESUME_NAME = "resume.pt"
REPORT_DIR = "train"
_NOT_IN_FINGERPRINT = ("checkpoint_every", "loader_workers")


def irn_step(index: PathIndex) -> Callable[[torch.nn.Module, dict], dict]:
    """The training step's losses (SPEC F.4) on the pairs of ``index`` (the crop's stride-4 grid)."""

    def step(model: torch.nn.Module, batch: dict) -> dict:
        edge, displacement = model(batch["image"])
        affinity = path_affinity(torch.sigmoid(edge[:, 0].float()), index)
        bg_pos, fg_pos, neg = affinity_labels(batch["labels"], index)
        return irn_losses(affinity, pair_displacement(displacement.float(), index), index.directions,
                          bg_pos, fg_pos, neg)

    return step


def backbone_weights(sipe: dict, init: Path | None):
    """The backbone initialisation ``sipe.weights`` names: None (random), "imagenet", or a file
    (``pretrain`` = the pretrain-backbone stage's output, given as ``init``)."""
    weights = sipe["weights"]
    if weights == "pretrain":
        if init is None:
            raise ConfigError("sipe.weights is 'pretrain': give the pre-trained backbone file with --init "
                              "(the pretrain-backbone stage writes it)")
        return init
    return None if weights == "none" else weights


def train_irn(params: dict, data: Path, labels_dir: Path, out_dir: Path, workers: int, device: str | None = None,
              init: Path | None = None, on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train IRN on ``train_aug`` with the IR labels in ``labels_dir``; return the path of ``model.pt``.

    A run killed part-way resumes from ``out_dir/resume.pt`` when started again with the same
    settings (bit-identical weights on CPU). ``on_step(step, row)`` is called after every step.
    """
    settings, sipe = dict(params["irn"]), params["sipe"]
    data, out_dir = Path(data), Path(out_dir)
    manifest = DatasetManifest.load(data)
    crop, radius = settings["crop"], settings["radius"]
    if settings["scale_range"][0] > settings["scale_range"][1]:
        raise ConfigError(f"irn.scale_range: {settings['scale_range'][0]} exceeds {settings['scale_range'][1]}")
    try:
        index = PathIndex(radius, crop // 4, crop // 4)
    except ValueError as exc:
        raise ConfigError(f"irn.crop {crop} / irn.radius {radius}: {exc} (the crop's stride-4 grid)") from None
    dataset = AffinityDataset(manifest, Path(labels_dir), "train_aug", crop=crop,
                              scale_range=tuple(settings["scale_range"]))
    batch = settings["batch_size"]
    steps_per_epoch = len(dataset) // batch
    if steps_per_epoch < 1:
        raise ConfigError(f"irn.batch_size: {batch} exceeds the {len(dataset)} train_aug images of {data}")
    max_step = steps_per_epoch * settings["epochs"]

    torch.set_num_threads(max(1, workers))
    seed_everything(settings["seed"])
    model = IRN(sipe["backbone"], backbone_weights(sipe, init))
    optimizer = make_sgd([{"params": model.edge_parameters(), "lr_mult": 1.0, "name": "edge"},
                          {"params": model.displacement_parameters(), "lr_mult": settings["displacement_lr_mult"],
                           "name": "displacement"}],
                         lr=settings["lr"], weight_decay=settings["weight_decay"], momentum=settings["momentum"])
    config = TrainConfig(max_step=max_step, batch_size=batch, seed=settings["seed"], poly_power=settings["poly_power"],
                         grad_clip=None, checkpoint_every=settings["checkpoint_every"],
                         loader_workers=settings["loader_workers"], device=device, desc="train-irn")
    fingerprint = {"irn": {k: v for k, v in settings.items() if k not in _NOT_IN_FINGERPRINT},
                   "backbone": sipe["backbone"], "weights": sipe["weights"], "dataset": manifest.name,
                   "ids_sha1": hashlib.sha1("\n".join(dataset.ids).encode()).hexdigest()}

    report_dir = out_dir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / RESUME_NAME
    log.info("training IRN (%s, %s) on %d images: %d steps of %d, crop %d, radius %d (%d directions, %d sources)",
             sipe["backbone"], sipe["weights"], len(dataset), max_step, batch, crop, radius, index.num_directions,
             index.num_sources)
    started = time.time()
    result = fit(model, optimizer, dataset, irn_step(index), config, resume_path=resume_path,
                 log_path=report_dir / "steps.csv", fingerprint=fingerprint, on_step=on_step)

    summary = result_summary(result, config)
    summary.update({"images": len(dataset), "steps_per_epoch": steps_per_epoch, "epochs": settings["epochs"],
                    "dataset": manifest.name, "backbone": sipe["backbone"], "settings": settings,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "session_started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))})
    plot_losses(report_dir / "steps.csv", report_dir / "loss.png", title=f"IRN training ({manifest.name})")
    write_json(report_dir / "train.json", summary)
    model_path = out_dir / MODEL_NAME
    save_model(model_path, model.cpu(), steps=result.steps, seed=settings["seed"], dataset=manifest.name,
               final_losses=result.final)
    resume_path.unlink(missing_ok=True)
    log.info("wrote %s (%d steps, %.1f s, %.1f img/s; final %s)", model_path, result.steps, result.wall_s,
             result.images_per_s, ", ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
    return model_path
