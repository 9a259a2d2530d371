"""Stage ``train-sipe``: train the SIPE classifier on ``train_aug`` (SPEC A.4, B, C).

Loss = multilabel soft margin(score, y) + GSC(cam, is_cam) (GSC left out for the ``nogsc`` variant,
paper Tab. 4). SGD with the poly schedule and the reference's momentum quirk, global L2 clipping,
``max_step = (len(train_aug) // batch_size) · epochs`` with drop_last.

Outputs in ``out_dir``::

    model.pt            SIPENet weights + config (sipe.models.checkpoint.save_model), written last
    train/steps.csv     one row per step: step, epoch, lr, loss, loss_cls, loss_gsc, grad_norm, time_s
    train/train.json    final losses, steps, speed, wall time, seed, settings, library versions
    train/loss.png      loss curves and the lr schedule
    resume.pt           resumable checkpoint while training runs; deleted when the outputs are written
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from sipe import ipe
from sipe.data.classification import ClassificationDataset, valid_mask_from
from sipe.data.manifest import DatasetManifest
from sipe.errors import ConfigError
from sipe.io import write_json
from sipe.models.checkpoint import save_model
from sipe.models.sipe_net import SIPENet
from sipe.training import (TrainConfig, fit, make_sgd, plot_losses, result_summary, seed_everything)

log = logging.getLogger(__name__)

MODEL_NAME = "model.pt"
RESUME_NAME = "resume.pt"
REPORT_DIR = "train"
# Settings that do not change the trained weights; a checkpoint written under other values still resumes.
_NOT_IN_FINGERPRINT = ("checkpoint_every", "loader_workers", "variants")


def sipe_step(gsc: bool) -> Callable[[torch.nn.Module, dict], dict]:
    """The training step's loss (SPEC C): L = L_cls + L_GSC, each weight 1; with ``gsc=False`` only L_cls
    is minimised and L_GSC is still logged (computed without autograd) for comparison."""

    def step(model: torch.nn.Module, batch: dict) -> dict:
        label = batch["label"]
        valid = batch["valid_mask"] if "valid_mask" in batch else valid_mask_from(batch["content"], label)
        out = model(batch["image"], valid)
        loss_cls = F.multilabel_soft_margin_loss(out["score"].float(), label.float())
        if gsc:
            loss_gsc = ipe.gsc_loss(out["cam"].float(), out["is_cam"].float())
            return {"loss": loss_cls + loss_gsc, "loss_cls": loss_cls, "loss_gsc": loss_gsc}
        with torch.no_grad():
            loss_gsc = ipe.gsc_loss(out["cam"].float(), out["is_cam"].float())
        return {"loss": loss_cls, "loss_cls": loss_cls, "loss_gsc": loss_gsc}

    return step


def build_sipe(settings: dict, num_classes: int, init: Path | None = None) -> SIPENet:
    """SIPENet from the ``sipe`` params section (``weights: none`` = random init; ``pretrain`` = the
    backbone file ``init`` written by the pretrain_backbone stage)."""
    weights = settings["weights"]
    if weights == "pretrain":
        if init is None:
            raise ConfigError("sipe.weights is 'pretrain': give the pre-trained backbone file with --init "
                              "(the pretrain-backbone stage writes it)")
        weights = init
    return SIPENet(num_classes, backbone=settings["backbone"], weights=None if weights == "none" else weights,
                   seed_method=settings["seed_method"], seed_threshold=settings["seed_threshold"],
                   prototype_feature=settings["prototype_feature"],
                   background_prototype=settings["background_prototype"], bg_attenuation=settings["bg_attenuation"])


def train_sipe(params: dict, data: Path, out_dir: Path, workers: int, device: str | None = None, *,
               gsc: bool | None = None, init: Path | None = None,
               on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train SIPENet on the ``train_aug`` split of the prepared dataset ``data``; return the path of ``model.pt``.

    ``gsc`` overrides ``params["sipe"]["gsc"]`` (the ``nogsc`` variant passes ``False``). ``workers``
    sets torch's CPU threads; DataLoader processes come from ``sipe.loader_workers``. A run killed
    part-way resumes from ``out_dir/resume.pt`` when started again with the same settings and gives
    the same weights (bit-identical on CPU). ``on_step(step, row)`` is called after every step.
    """
    settings = dict(params["sipe"])
    if gsc is not None:
        settings["gsc"] = bool(gsc)
    data, out_dir = Path(data), Path(out_dir)
    manifest = DatasetManifest.load(data)
    dataset = ClassificationDataset(manifest, "train_aug", crop=settings["crop"],
                                    resize_long=tuple(settings["resize_long"]), with_valid_mask=False)
    batch = settings["batch_size"]
    steps_per_epoch = len(dataset) // batch
    if steps_per_epoch < 1:
        raise ConfigError(f"sipe.batch_size: {batch} exceeds the {len(dataset)} train_aug images of {data}")
    max_step = steps_per_epoch * settings["epochs"]

    torch.set_num_threads(max(1, workers))
    seed_everything(settings["seed"])
    model = build_sipe(settings, manifest.num_classes - 1, init)
    backbone, new = model.parameter_groups()
    optimizer = make_sgd([{"params": backbone, "lr_mult": 1.0, "name": "backbone"},
                          {"params": new, "lr_mult": settings["new_layer_lr_mult"], "name": "new"}],
                         lr=settings["lr"], weight_decay=settings["weight_decay"], momentum=settings["momentum"])
    config = TrainConfig(max_step=max_step, batch_size=batch, seed=settings["seed"], poly_power=settings["poly_power"],
                         grad_clip=settings["grad_clip"], checkpoint_every=settings["checkpoint_every"],
                         loader_workers=settings["loader_workers"], precision=settings["precision"],
                         channels_last=settings["channels_last"], device=device,
                         desc="train-sipe" if settings["gsc"] else "train-sipe (no GSC)")
    fingerprint = {"sipe": {k: v for k, v in settings.items() if k not in _NOT_IN_FINGERPRINT},
                   "dataset": manifest.name, "num_classes": manifest.num_classes,
                   "ids_sha1": hashlib.sha1("\n".join(dataset.ids).encode()).hexdigest()}

    report_dir = out_dir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / RESUME_NAME
    log.info("training SIPE (%s, %s, gsc %s) on %d images: %d steps of %d, crop %d", settings["backbone"],
             settings["weights"], settings["gsc"], len(dataset), max_step, batch, settings["crop"])
    started = time.time()
    result = fit(model, optimizer, dataset, sipe_step(settings["gsc"]), config, resume_path=resume_path,
                 log_path=report_dir / "steps.csv", fingerprint=fingerprint, on_step=on_step)

    summary = result_summary(result, config)
    summary.update({"seed": settings["seed"], "gsc": settings["gsc"], "images": len(dataset),
                    "steps_per_epoch": steps_per_epoch, "epochs": settings["epochs"], "dataset": manifest.name,
                    "settings": settings, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "session_started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))})
    title = f"SIPE training ({'GSC on' if settings['gsc'] else 'GSC off'}, {manifest.name})"
    plot_losses(report_dir / "steps.csv", report_dir / "loss.png", title=title)
    write_json(report_dir / "train.json", summary)
    model_path = out_dir / MODEL_NAME
    save_model(model_path, model.cpu(), steps=result.steps, seed=settings["seed"], gsc=settings["gsc"],
               dataset=manifest.name, final_losses=result.final)
    resume_path.unlink(missing_ok=True)
    log.info("wrote %s (%d steps, %.1f s, %.1f img/s; final %s)", model_path, result.steps, result.wall_s,
             result.images_per_s, ", ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
    return model_path
