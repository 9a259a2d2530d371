"""Fixtures of the DeepLab tests: the tiny synthetic dataset of tests/configs/stages.yaml."""

from __future__ import annotations

import pytest

from sipe.data.synthetic import generate_synthetic
from tests.tiny import TINY_DATA

@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The prepared tiny dataset (16 train_aug, 4 train, 4 val images of 64-96 px); do not modify it."""
    out = tmp_path_factory.mktemp("tiny_synthetic_deeplab")
    generate_synthetic(out, TINY_DATA)
    return out
