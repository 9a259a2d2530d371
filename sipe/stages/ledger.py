"""The headline metrics of a run: one small JSON that DVC shows as the columns of ``dvc exp show``.

Only the paper's table rows and the final training losses (docs/reproducing.md, "Comparing
experiments"); per-class numbers stay in the per-class CSVs. mIoU in %, rounded to 0.01::

    localisation: cam (CAM baseline, best background threshold), is_cam_nogsc, cam_gsc (CAM of the
                  GSC-trained model), sipe (IS-CAM with GSC)                             (train, Tab. 4)
    refinement:   crf (+dCRF), ir_labels (confident pixels), pseudo_labels            (train, Tab. 1)
    segmentation: val, val_crf (DeepLabV2, MSC; + denseCRF)                            (val, Tab. 2-3)
    final_loss:   one entry per trained network (pretrain, sipe, nogsc, irn, deeplab)

A row whose evaluation the configuration does not run (e.g. ``refine.method: crf`` has no pseudo labels)
is left out.
"""

from __future__ import annotations

from pathlib import Path

from sipe.errors import SipeError
from sipe.io import read_json, write_json


def _percent(value: float) -> float:
    return round(100 * float(value), 2)


def _read(path: Path, key: str) -> float:
    summary = read_json(path)
    if not isinstance(summary, dict) or key not in summary:
        raise SipeError(f"{path}: no {key!r} in this summary")
    return summary[key]


def training_name(path: Path) -> str:
    """``results/<ds>/refine/irn/train/train.json`` → ``irn``: the folder the network was trained into."""
    return Path(path).parent.parent.name


def headline_metrics(eval_cams: list[Path], eval_labels: list[Path], eval_seg: list[Path],
                     trainings: list[Path]) -> dict:
    """The headline metrics from the evaluation summaries and the trainings' ``train.json`` files.

    ``eval_cams``: ``<variant>/eval_cams/summary.json``; ``eval_labels``: ``refine/<labels>_eval/summary.json``;
    ``eval_seg``: ``deeplab/eval/<kind>/summary.json``; ``trainings``: ``<network>/train/train.json``."""
    localisation, refinement, segmentation = {}, {}, {}
    for path in map(Path, eval_cams):
        variant = path.parent.parent.name
        if variant == "nogsc":
            localisation["cam"] = _percent(_read(path, "cam_mIoU"))
            localisation["is_cam_nogsc"] = _percent(_read(path, "is_cam_mIoU"))
        elif variant == "sipe":
            localisation["cam_gsc"] = _percent(_read(path, "cam_mIoU"))
            localisation["sipe"] = _percent(_read(path, "is_cam_mIoU"))
    for path in map(Path, eval_labels):
        labels = path.parent.name.removesuffix("_eval")
        # IR labels leave uncertain pixels unlabelled: their score is over the confident pixels (Tab. 1 style).
        refinement[labels] = _percent(_read(path, "confident_mIoU" if labels == "ir_labels" else "mIoU"))
    for path in map(Path, eval_seg):
        kind = path.parent.name
        segmentation["val" if kind == "pred" else f"val_{kind}"] = _percent(_read(path, "mIoU"))
    final_loss = {}
    for path in map(Path, trainings):
        losses = read_json(path).get("final_losses") or {}
        if "loss" not in losses:
            raise SipeError(f"{path}: no final_losses.loss in this training record")
        final_loss[training_name(path)] = round(float(losses["loss"]), 4)
    metrics = {"localisation": localisation, "refinement": refinement, "segmentation": segmentation,
               "final_loss": final_loss}
    return {section: values for section, values in metrics.items() if values}


def write_headline_metrics(out: Path, **inputs: list[Path]) -> dict:
    """The ``headline-metrics`` command: :func:`headline_metrics` written to ``out`` (JSON), and returned."""
    metrics = headline_metrics(**inputs)
    write_json(Path(out), metrics)
    return metrics
