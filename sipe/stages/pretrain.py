"""Backbone pre-training on image-level labels: the stand-in for ImageNet weights (``sipe.weights: pretrain``).

SIPE starts from ImageNet weights and keeps the stem, layer1–2 and every BatchNorm statistic
frozen (SPEC B.1, C). From random weights that regime learns nothing: the frozen random layers and
identity BatchNorm leave the classifier at the label prior (measured on the synthetic set: loss
0.556 after 660 steps vs 0.563 for the constant prior). Where no ImageNet file can be had (the
synthetic default, an offline machine), this stage trains a plain torchvision ResNet the standard
way — all layers, BatchNorm in training mode, momentum — on the ``train_aug`` image labels, and
saves it in torchvision's format without ``fc``. SIPE training then starts from it exactly as it
would from ImageNet weights. This is a deliberate deviation from the reference, named by the
``pretrain`` value of ``sipe.weights`` and configured in the ``pretrain`` params section.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from sipe.data.classification import ClassificationDataset
from sipe.data.manifest import DatasetManifest
from sipe.io import save_torch, write_json
from sipe.training import TrainConfig, fit, make_sgd, plot_losses, result_summary, seed_everything

log = logging.getLogger(__name__)
WEIGHTS_NAME = "backbone.pth"


def _classification_step(model: torch.nn.Module, batch: dict) -> dict:
    loss = F.multilabel_soft_margin_loss(model(batch["image"]).float(), batch["label"].float())
    return {"loss": loss}


def pretrain_backbone(params: dict, data: Path, out_dir: Path, workers: int, device: str | None = None) -> Path:
    """Train ``sipe.backbone`` on ``train_aug`` image labels; write ``out_dir/backbone.pth``, ``steps.csv``, ``loss.png``."""
    settings, sipe = params["pretrain"], params["sipe"]
    data, out_dir = Path(data), Path(out_dir)
    manifest = DatasetManifest.load(data)
    dataset = ClassificationDataset(manifest, "train_aug", crop=sipe["crop"], resize_long=tuple(sipe["resize_long"]),
                                    with_valid_mask=False)
    torch.set_num_threads(max(1, workers))
    seed_everything(settings["seed"])
    model = getattr(torchvision.models, sipe["backbone"])(num_classes=manifest.num_classes - 1)
    optimizer = make_sgd([{"params": list(model.parameters())}], lr=settings["lr"],
                         weight_decay=settings["weight_decay"], momentum=settings["momentum"])
    max_step = (len(dataset) // settings["batch_size"]) * settings["epochs"]
    config = TrainConfig(max_step=max_step, batch_size=settings["batch_size"], seed=settings["seed"],
                         grad_clip=None, loader_workers=sipe["loader_workers"], device=device,
                         checkpoint_every=sipe["checkpoint_every"], desc="pretrain-backbone")
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / "resume.pt"
    result = fit(model, optimizer, dataset, _classification_step, config, resume_path=resume_path,
                 log_path=out_dir / "steps.csv", fingerprint={"pretrain": settings, "backbone": sipe["backbone"],
                                                               "crop": sipe["crop"], "dataset": manifest.name})
    plot_losses(out_dir / "steps.csv", out_dir / "loss.png", title=f"backbone pre-training ({manifest.name})")
    write_json(out_dir / "pretrain.json", {**result_summary(result, config), "settings": settings})
    weights = out_dir / WEIGHTS_NAME
    save_torch(weights, {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("fc.")})
    resume_path.unlink(missing_ok=True)
    log.info("wrote %s (%d steps, final loss %.4f)", weights, result.steps, result.final["loss"])
    return weights
