"""Tiny settings shared by the training tests: a 16-image synthetic dataset and a resnet18 SIPE run on 64 px crops."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TINY_DATA = {"seed": 3, "num_classes": 4, "train_aug": 16, "train": 4, "val": 4, "min_side": 64, "max_side": 96,
             "max_objects": 3, "distractors": 2, "border": 2, "jpeg_quality": 90}


def tiny_params(**sipe) -> dict:
    """params.yaml with tiny SIPE training settings (resnet18, random init, crop 64, batch 4, 2 epochs)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sipe"].update({"backbone": "resnet18", "weights": "none", "crop": 64, "resize_long": [48, 96],
                           "batch_size": 4, "epochs": 2, "checkpoint_every": 3, "loader_workers": 0,
                           "precision": "fp32", "channels_last": False, "gsc": True, **sipe})
    return params
