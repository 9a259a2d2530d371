"""Backbone pre-training on image-level labels: the stand-in for ImageNet weights (``sipe.weights: pretrain``).

SIPE starts from ImageNet weights and keeps the stem, layer1–2 and every BatchNorm statistic
frozen (docs/method.md B.1, C). From random weights that regime learns nothing: the frozen random layers and
identity BatchNorm leave the classifier at the label prior (measured on the synthetic set: loss
0.556 after 660 steps vs 0.563 for the constant prior). Where no ImageNet file can be had (the
synthetic default, an offline machine), this stage trains a plain torchvision ResNet the standard
way — all layers, BatchNorm in training mode, momentum — on the ``train_aug`` image labels, and
saves it in torchvision's format without ``fc``. SIPE training then starts from it exactly as it
would from ImageNet weights. This is a deliberate deviation from the reference, named by the
``pretrain`` value of ``sipe.weights`` and configured in the ``pretrain`` params section.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from sipe.data.classification import ClassificationDataset
from sipe.data.manifest import DatasetManifest
from sipe.io import save_torch
from sipe.trainer import Built, TrainingJob, epoch_steps, run_training

WEIGHTS_NAME = "backbone.pth"


def _classification_step(model: torch.nn.Module, batch: dict) -> dict:
    loss = F.multilabel_soft_margin_loss(model(batch["image"]).float(), batch["label"].float())
    return {"loss": loss}


def _save_backbone(path: Path, model: torch.nn.Module, **meta) -> None:
    """The weights in torchvision's format, without ``fc`` (what ``sipe.weights`` reads)."""
    save_torch(path, {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")})


def pretrain_backbone(params: dict, data: Path, out_dir: Path, workers: int, device: str | None = None) -> Path:
    """Train ``sipe.backbone`` on ``train_aug`` image labels; return ``out_dir/backbone.pth`` (the rest of
    the layout and the resuming as :func:`sipe.trainer.run_training`). Crop, resize, DataLoader
    processes and checkpoint interval come from the ``sipe`` section."""
    settings, sipe = params["pretrain"], params["sipe"]
    manifest = DatasetManifest.load(data)
    dataset = ClassificationDataset(manifest, "train_aug", crop=sipe["crop"], resize_long=tuple(sipe["resize_long"]),
                                    with_valid_mask=False)

    def build() -> Built:
        model = getattr(torchvision.models, sipe["backbone"])(num_classes=manifest.num_classes - 1)
        return Built(model, [{"params": list(model.parameters())}], _classification_step)

    job = TrainingJob(
        name="pretrain-backbone", title=f"backbone pre-training ({manifest.name})", settings=settings,
        dataset=dataset, dataset_name=manifest.name, build=build,
        config={"max_step": epoch_steps(len(dataset), settings, "pretrain", data),
                "batch_size": settings["batch_size"], "grad_clip": None, "loader_workers": sipe["loader_workers"],
                "checkpoint_every": sipe["checkpoint_every"]},
        fingerprint={"pretrain": settings, "backbone": sipe["backbone"], "crop": sipe["crop"]},
        about=f"torchvision {sipe['backbone']}, all layers, crop {sipe['crop']}",
        summary={"epochs": settings["epochs"], "backbone": sipe["backbone"]},
        model_name=WEIGHTS_NAME, export=_save_backbone)
    return run_training(job, Path(out_dir), workers, device)
