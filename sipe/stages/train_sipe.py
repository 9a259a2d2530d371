"""Stage ``train-sipe``: train the SIPE classifier on ``train_aug`` (docs/method.md A.4, B, C).

Loss = multilabel soft margin(score, y) + GSC(cam, is_cam) (GSC left out for the ``nogsc`` variant,
paper Tab. 4). SGD with the poly schedule and the reference's momentum quirk, global L2 clipping,
``max_step = (len(train_aug) // batch_size) · epochs`` with drop_last. Run by the trainer template
(:mod:`sipe.trainer`, output layout there); ``train/steps.csv`` logs loss, loss_cls and loss_gsc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from sipe import ipe
from sipe.data.classification import ClassificationDataset, valid_mask_from
from sipe.data.manifest import DatasetManifest
from sipe.models.sipe_net import SIPENet
from sipe.trainer import Built, TrainingJob, backbone_init, epoch_steps, ids_sha1, run_training, trained_settings


def sipe_step(gsc: bool) -> Callable[[torch.nn.Module, dict], dict]:
    """The training step's loss (docs/method.md C): L = L_cls + L_GSC, each weight 1; with ``gsc=False`` only L_cls
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
    """SIPENet from the ``sipe`` params section (``weights``: :func:`sipe.trainer.backbone_init`)."""
    return SIPENet(num_classes, backbone=settings["backbone"], weights=backbone_init("sipe", settings["weights"], init),
                   seed_method=settings["seed_method"], seed_threshold=settings["seed_threshold"],
                   prototype_feature=settings["prototype_feature"],
                   background_prototype=settings["background_prototype"], bg_attenuation=settings["bg_attenuation"])


def train_sipe(params: dict, data: Path, out_dir: Path, workers: int, device: str | None = None, *,
               variant: str = "sipe", init: Path | None = None,
               on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train SIPENet on the ``train_aug`` split of the prepared dataset ``data``; return the path of ``model.pt``.

    ``variant`` "sipe" trains with the settings of ``params``, "nogsc" the same without the GSC loss (the
    CAM baseline and "IS-CAM without GSC" of the paper's Tab. 4); the rest as
    :func:`sipe.trainer.run_training` (DataLoader processes: ``sipe.loader_workers``).
    """
    settings = dict(params["sipe"])
    if variant == "nogsc":
        settings["gsc"] = False
    manifest = DatasetManifest.load(data)
    dataset = ClassificationDataset(manifest, "train_aug", crop=settings["crop"],
                                    resize_long=tuple(settings["resize_long"]), with_valid_mask=False)
    max_step = epoch_steps(len(dataset), settings, "sipe", data)

    def build() -> Built:
        model = build_sipe(settings, manifest.num_classes - 1, init)
        backbone, new = model.parameter_groups()
        return Built(model, [{"params": backbone, "lr_mult": 1.0, "name": "backbone"},
                             {"params": new, "lr_mult": settings["new_layer_lr_mult"], "name": "new"}],
                     sipe_step(settings["gsc"]))

    job = TrainingJob(
        name="train-sipe" if settings["gsc"] else "train-sipe (no GSC)", dataset=dataset, dataset_name=manifest.name,
        title=f"SIPE training ({'GSC on' if settings['gsc'] else 'GSC off'}, {manifest.name})",
        settings=settings, build=build, config={"max_step": max_step, "batch_size": settings["batch_size"]},
        fingerprint={"sipe": trained_settings(settings, "variants"), "num_classes": manifest.num_classes,
                     "ids_sha1": ids_sha1(dataset.ids)},
        inputs={"init": init},
        about=f"SIPE {settings['backbone']}, weights {settings['weights']}, gsc {settings['gsc']}, "
              f"crop {settings['crop']}",
        summary={"gsc": settings["gsc"], "epochs": settings["epochs"]}, meta={"gsc": settings["gsc"]})
    return run_training(job, Path(out_dir), workers, device, on_step)
