"""The trainer template of the four training stages: pretrain-backbone, train-sipe, train-irn, train-deeplab.

A stage describes what is its own in a :class:`TrainingJob` — the dataset, how to build the model
with its parameter groups and loss (:class:`Built`), its settings — and :func:`run_training` does the
rest the same way for all of them (:func:`sipe.training.fit` underneath), into one output layout::

    <out>/model.pt          the trained network, written last and atomically (pretrain-backbone: backbone.pth);
                            the previous one stays until then (a killed rerun loses nothing)
    <out>/train/steps.csv   one row per step: step, epoch, lr, loss and its parts, grad_norm, time_s
    <out>/train/train.json  final losses, steps, speed, seed, settings, library versions
    <out>/train/loss.png    loss curves and the lr schedule
    <out>/resume.pt         resumable checkpoint while training runs; deleted when the outputs are written
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from sipe.errors import ConfigError
from sipe.io import atomic_path, input_digest, write_json
from sipe.training import StepFn, TrainConfig, TrainResult, fit, make_sgd, seed_everything

log = logging.getLogger(__name__)

MODEL_NAME = "model.pt"
RESUME_NAME = "resume.pt"
REPORT_DIR = "train"
STEPS_NAME = "steps.csv"
# TrainConfig fields a params section may set (read from it when present).
SETTINGS_FIELDS = ("seed", "poly_power", "grad_clip", "checkpoint_every", "loader_workers", "precision",
                   "channels_last", "lr_every")
# Settings that do not change the trained weights: a checkpoint written under other values still resumes.
NOT_IN_FINGERPRINT = ("checkpoint_every", "loader_workers")


class Built(NamedTuple):
    """What a stage builds once the RNGs are seeded: the model, its parameter groups for
    :func:`sipe.training.make_sgd` and the step function (the loss)."""

    model: nn.Module
    groups: list[dict]
    step: StepFn


@dataclass
class TrainingJob:
    """One training stage: everything that differs between pretrain, SIPE, IRN and DeepLab."""

    name: str                          # the stage: progress bar and log lines ("train-sipe")
    title: str                         # title of loss.png
    settings: dict                     # the params section: lr, momentum, weight_decay, seed, SETTINGS_FIELDS
    dataset: Any                       # len(dataset) and dataset.sample(index, generator)
    dataset_name: str
    build: Callable[[], Built]
    config: dict                       # max_step, batch_size and TrainConfig values not in ``settings``
    fingerprint: dict                  # the settings that shape the weights (resume.pt must match them)
    inputs: dict = field(default_factory=dict)   # name → file or folder the weights come from (init weights,
                                                 # labels): their digests join the fingerprint (sipe.io.input_digest)
    about: str = ""                    # details for the start log line
    summary: dict = field(default_factory=dict)  # extra train.json entries
    meta: dict = field(default_factory=dict)     # extra model.pt "meta" entries
    model_name: str = MODEL_NAME
    export: Callable[..., None] | None = None    # export(path, model, **meta); None: model.save (SavedModel)


def run_training(job: TrainingJob, out_dir: Path, workers: int, device: str | None = None,
                 on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train ``job`` into ``out_dir`` (layout in the module docstring); return the model file's path.

    ``workers`` sets torch's CPU threads. A run killed part-way resumes from ``out_dir/resume.pt``
    when started again with the same settings and gives the same weights (bit-identical on CPU).
    ``on_step(step, row)`` is called after every step.
    """
    out_dir, settings = Path(out_dir), job.settings
    torch.set_num_threads(max(1, workers))
    seed_everything(settings["seed"])
    model, groups, step = job.build()
    optimizer = make_sgd(groups, lr=settings["lr"], weight_decay=settings["weight_decay"],
                         momentum=settings["momentum"])
    config = TrainConfig(**{**{k: settings[k] for k in SETTINGS_FIELDS if k in settings}, **job.config,
                            "device": device, "desc": job.name})
    log.info("%s on %d images: %d steps of %d%s", job.name, len(job.dataset), config.max_step, config.batch_size,
             f", {job.about}" if job.about else "")
    started, report = time.time(), out_dir / REPORT_DIR
    fingerprint = {**job.fingerprint, "dataset": job.dataset_name}
    if job.inputs:  # a checkpoint of a run on other labels or init weights must not be resumed
        fingerprint["inputs"] = {name: input_digest(path) for name, path in job.inputs.items()}
    result = fit(model, optimizer, job.dataset, step, config, resume_path=out_dir / RESUME_NAME,
                 log_path=report / STEPS_NAME, fingerprint=fingerprint, on_step=on_step)
    write_report(job, result, config, report, started)
    model_path = out_dir / job.model_name
    meta = {"steps": result.steps, "seed": settings["seed"], **job.meta, "dataset": job.dataset_name,
            "final_losses": result.final}
    if job.export is None:
        model.cpu().save(model_path, **meta)
    else:
        job.export(model_path, model.cpu(), **meta)
    (out_dir / RESUME_NAME).unlink(missing_ok=True)
    log.info("wrote %s (%d steps, %.1f s, %.1f img/s; final %s)", model_path, result.steps, result.wall_s,
             result.images_per_s, ", ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
    return model_path


def write_report(job: TrainingJob, result: TrainResult, config: TrainConfig, report: Path, started: float) -> None:
    """``train.json`` and ``loss.png`` next to the run's ``steps.csv`` in ``report``."""
    summary = result_summary(result, config)
    summary.update({"seed": job.settings["seed"], "images": len(job.dataset),
                    "steps_per_epoch": len(job.dataset) // config.batch_size, "dataset": job.dataset_name,
                    **job.summary, "settings": job.settings, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "session_started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))})
    plot_losses(report / STEPS_NAME, report / "loss.png", title=job.title)
    write_json(report / "train.json", summary)


# ----------------------------------------------------------------------------------------------
# What the stages share before training
# ----------------------------------------------------------------------------------------------

def epoch_steps(images: int, settings: dict, section: str, data: Path) -> int:
    """``max_step`` = (images // batch_size) · epochs (drop_last); :class:`ConfigError` when one batch
    is more than the ``images`` of ``data``."""
    per_epoch = images // settings["batch_size"]
    if per_epoch < 1:
        raise ConfigError(f"{section}.batch_size: {settings['batch_size']} exceeds the {images} train_aug images "
                          f"of {data}")
    return per_epoch * settings["epochs"]


def backbone_init(section: str, weights: str, init: Path | None) -> str | Path | None:
    """The backbone initialisation ``<section>.weights`` names: ``None`` (``none``, random), ``"imagenet"``,
    a file path, or for ``pretrain`` the pretrain-backbone stage's file given as ``init`` (``--init``)."""
    if weights == "pretrain":
        if init is None:
            raise ConfigError(f"{section}.weights is 'pretrain': give the pre-trained backbone file with --init "
                              "(the pretrain-backbone stage writes it)")
        return init
    return None if weights == "none" else weights


def trained_settings(settings: dict, *also: str) -> dict:
    """``settings`` without the keys that do not change the weights (:data:`NOT_IN_FINGERPRINT` and ``also``)."""
    return {k: v for k, v in settings.items() if k not in (*NOT_IN_FINGERPRINT, *also)}


def ids_sha1(ids: list[str]) -> str:
    """SHA-1 of the newline-joined sample ids (a fingerprint entry)."""
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def library_versions() -> dict:
    """Versions recorded with every training run."""
    import PIL
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}


def result_summary(result: TrainResult, config: TrainConfig) -> dict:
    """A JSON-ready record of a run: settings, losses, speed and library versions."""
    return {"steps": result.steps, "resumed_from": result.resumed_from, "wall_s": round(result.wall_s, 3),
            "session_s": round(result.session_s, 3), "images_per_s": round(result.images_per_s, 3),
            "steps_per_s": round(result.steps_per_s, 4), "final_losses": result.final,
            "last_step": result.last, "device": result.device, "processes": result.processes,
            "torch_threads": torch.get_num_threads(),
            "config": asdict(config), "versions": library_versions()}


def plot_losses(log_path: Path, png_path: Path, title: str = "training loss") -> None:
    """Loss curves (raw and a moving average per ``loss*`` column, log scale) and the lr, from a steps CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(log_path)
    loss_cols = [c for c in table.columns if c.startswith("loss")]
    window = max(1, min(25, len(table) // 10))
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, col in enumerate(loss_cols):
        colour = f"C{i}"
        ax.plot(table["step"], table[col], color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(table["step"], table[col].rolling(window, min_periods=1).mean(), color=colour, label=col)
    if loss_cols and (table[loss_cols] > 0).all().all():
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax.grid(True, alpha=0.3)
    ax_lr.plot(table["step"], table["lr"], color="k")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("lr")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


__all__ = ["Built", "TrainingJob", "run_training", "write_report", "epoch_steps", "backbone_init",
           "trained_settings", "ids_sha1", "library_versions", "result_summary", "plot_losses", "MODEL_NAME",
           "RESUME_NAME", "REPORT_DIR", "STEPS_NAME"]
