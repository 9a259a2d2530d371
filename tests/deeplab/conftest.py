"""Fixtures of the DeepLab tests: the tiny synthetic dataset of the training tests, and tiny settings."""

from __future__ import annotations

import pytest
import yaml

from sipe.data.synthetic import generate_synthetic
from tests.train.tiny import REPO, TINY_DATA

# resnet18 from random weights on 32 px crops: seconds per run, every code path exercised.
TINY_DEEPLAB = {"backbone": "resnet18", "weights": "none", "style": "torchvision", "crop": 32,
                "scales": [0.75, 1.0, 1.25], "batch_size": 2, "iter_size": 2, "iterations": 4, "lr": 1e-3,
                "grad_clip": None, "lr_every": 2, "checkpoint_every": 2, "loader_workers": 0, "flip": True,
                "crf": True, "shards": 1, "sheet_samples": 2}


def tiny_deeplab_params(**overrides) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["deeplab"].update({**TINY_DEEPLAB, **overrides})
    return params


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The prepared tiny dataset (16 train_aug, 4 train, 4 val images of 64-96 px); do not modify it."""
    out = tmp_path_factory.mktemp("tiny_synthetic_deeplab")
    generate_synthetic(out, TINY_DATA)
    return out
