"""Fixtures of the training tests: a tiny synthetic dataset (16 train_aug images of 64–96 px, 4 classes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sipe.data.synthetic import generate_synthetic
from tests.tiny import TINY_DATA


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The prepared tiny dataset, shared by the session (do not modify it; use ``tiny_copy``)."""
    out = tmp_path_factory.mktemp("tiny_synthetic")
    generate_synthetic(out, TINY_DATA)
    return out


@pytest.fixture
def tiny_copy(tiny_data, tmp_path) -> Path:
    """A private copy of ``tiny_data`` that a test may break."""
    dest = tmp_path / "data"
    shutil.copytree(tiny_data, dest)
    return dest
