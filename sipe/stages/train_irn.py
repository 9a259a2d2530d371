"""Stage ``train-irn``: train IRN on the IR labels of ``train_aug`` (docs/method.md F.2–F.4).

The backbone is SIPE's (``sipe.backbone`` with ``sipe.weights``; the ``pretrain`` stand-in with
``--init``) and stays frozen; the edge branch learns at ``irn.lr``, the displacement branch at
``irn.lr · irn.displacement_lr_mult``, by SGD with the poly schedule and the reference's momentum
quirk, no gradient clipping, ``max_step = (len(train_aug) // batch_size) · epochs`` (drop_last).
Run by the trainer template (:mod:`sipe.trainer`, output layout there); ``train/steps.csv`` logs
loss and its five terms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from sipe.data.manifest import DatasetManifest
from sipe.errors import ConfigError
from sipe.io import check_complete
from sipe.models.irn import IRN
from sipe.refine.affinity_dataset import AffinityDataset
from sipe.refine.irn_loss import irn_losses
from sipe.refine.path_index import PathIndex, affinity_labels, pair_displacement, path_affinity
from sipe.trainer import Built, TrainingJob, backbone_init, epoch_steps, ids_sha1, run_training, trained_settings


def irn_step(index: PathIndex) -> Callable[[torch.nn.Module, dict], dict]:
    """The training step's losses (docs/method.md F.4) on the pairs of ``index`` (the crop's stride-4 grid)."""

    def step(model: torch.nn.Module, batch: dict) -> dict:
        edge, displacement = model(batch["image"])
        affinity = path_affinity(torch.sigmoid(edge[:, 0].float()), index)
        bg_pos, fg_pos, neg = affinity_labels(batch["labels"], index)
        return irn_losses(affinity, pair_displacement(displacement.float(), index), index.directions,
                          bg_pos, fg_pos, neg)

    return step


def train_irn(params: dict, data: Path, labels_dir: Path, out_dir: Path, workers: int, device: str | None = None,
              init: Path | None = None, on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train IRN on ``train_aug`` with the IR labels in ``labels_dir``; return the path of ``model.pt``
    (the rest as :func:`sipe.trainer.run_training`)."""
    settings, sipe = dict(params["irn"]), params["sipe"]
    manifest = DatasetManifest.load(data)
    crop, radius = settings["crop"], settings["radius"]
    if settings["scale_range"][0] > settings["scale_range"][1]:
        raise ConfigError(f"irn.scale_range: {settings['scale_range'][0]} exceeds {settings['scale_range'][1]}")
    try:
        index = PathIndex(radius, crop // 4, crop // 4)
    except ValueError as exc:
        raise ConfigError(f"irn.crop {crop} / irn.radius {radius}: {exc} (the crop's stride-4 grid)") from None
    check_complete(labels_dir)
    dataset = AffinityDataset(manifest, Path(labels_dir), "train_aug", crop=crop,
                              scale_range=tuple(settings["scale_range"]))
    max_step = epoch_steps(len(dataset), settings, "irn", data)

    def build() -> Built:
        model = IRN(sipe["backbone"], backbone_init("sipe", sipe["weights"], init))
        return Built(model, [{"params": model.edge_parameters(), "lr_mult": 1.0, "name": "edge"},
                             {"params": model.displacement_parameters(),
                              "lr_mult": settings["displacement_lr_mult"], "name": "displacement"}],
                     irn_step(index))

    job = TrainingJob(
        name="train-irn", title=f"IRN training ({manifest.name})", settings=settings, dataset=dataset,
        dataset_name=manifest.name, build=build,
        config={"max_step": max_step, "batch_size": settings["batch_size"], "grad_clip": None},
        fingerprint={"irn": trained_settings(settings), "backbone": sipe["backbone"], "weights": sipe["weights"],
                     "ids_sha1": ids_sha1(dataset.ids)},
        inputs={"labels": labels_dir, "init": init},
        about=f"IRN {sipe['backbone']}, weights {sipe['weights']}, crop {crop}, radius {radius} "
              f"({index.num_directions} directions, {index.num_sources} sources)",
        summary={"epochs": settings["epochs"], "backbone": sipe["backbone"]})
    return run_training(job, Path(out_dir), workers, device, on_step)
