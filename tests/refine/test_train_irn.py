"""The train-irn stage on a tiny synthetic dataset with IR labels made from its masks: outputs, exact
resuming, all-ignore images, bad labels and settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sipe.data.manifest import DatasetManifest
from sipe.data.synthetic import generate_synthetic
from sipe.errors import ConfigError, DatasetError
from sipe.io import read_label_png, save_label_png
from sipe.models.irn import load_irn
from sipe.refine.affinity_dataset import AffinityDataset
from sipe.stages.train_irn import train_irn
from tests.tiny import TINY_DATA

REPO = Path(__file__).resolve().parents[2]


def tiny_params(**irn) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sipe"].update({"backbone": "resnet18", "weights": "none"})
    params["irn"].update({"crop": 48, "radius": 5, "batch_size": 4, "epochs": 1, "checkpoint_every": 2,
                          "loader_workers": 0, **irn})
    return params


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, IR labels): the masks as IR labels, except the first image, which is all 255."""
    root = tmp_path_factory.mktemp("irn")
    (root / "data").mkdir()
    generate_synthetic(root / "data", TINY_DATA)
    manifest = DatasetManifest.load(root / "data")
    for n, image_id in enumerate(manifest.ids("train_aug")):
        mask = read_label_png(manifest.mask_path("train_aug", image_id))
        save_label_png(root / "ir" / f"{image_id}.png", np.full_like(mask, 255) if n == 0 else mask)
    return root / "data", root / "ir"


class Interrupt(Exception):
    pass


def test_outputs_and_their_contents(tiny, tmp_path):
    data, labels = tiny
    model_path = train_irn(tiny_params(), data, labels, tmp_path / "irn", workers=1)
    assert sorted(p.name for p in (tmp_path / "irn").iterdir()) == ["model.pt", "train"]  # resume.pt is gone
    assert sorted(p.name for p in (tmp_path / "irn" / "train").iterdir()) == ["loss.png", "steps.csv", "train.json"]
    steps = pd.read_csv(tmp_path / "irn" / "train" / "steps.csv")
    assert list(steps.columns) == ["step", "epoch", "lr", "loss", "loss_pos_bg", "loss_pos_fg", "loss_neg",
                                   "loss_dp_fg", "loss_dp_bg", "grad_norm", "time_s"]
    assert list(steps["step"]) == [1, 2, 3, 4] and steps["lr"].iloc[0] == 0.1  # 16 images // batch 4
    total = (steps.loss_pos_bg / 2 + steps.loss_pos_fg / 2 + steps.loss_neg) / 2 + (steps.loss_dp_fg + steps.loss_dp_bg) / 2
    np.testing.assert_allclose(steps["loss"], total, rtol=1e-5)
    summary = json.loads((tmp_path / "irn" / "train" / "train.json").read_text())
    assert summary["steps"] == 4 and summary["backbone"] == "resnet18" and summary["config"]["grad_clip"] is None
    model = load_irn(model_path, backbone="resnet18")
    assert tuple(model.edge(torch.zeros(1, 3, 48, 48)).shape) == (1, 1, 12, 12)


def test_killed_run_resumes_to_bit_identical_weights(tiny, tmp_path):
    data, labels = tiny
    params = tiny_params(epochs=2)  # 8 steps, checkpoints every 2
    straight = train_irn(params, data, labels, tmp_path / "straight", workers=1)

    def stop(step, row):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_irn(params, data, labels, tmp_path / "killed", workers=1, on_step=stop)
    assert (tmp_path / "killed" / "resume.pt").is_file() and not (tmp_path / "killed" / "model.pt").exists()
    resumed = train_irn(params, data, labels, tmp_path / "killed", workers=1)
    a, b = torch.load(straight, weights_only=True)["model"], torch.load(resumed, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(pd.read_csv(tmp_path / "killed" / "train" / "steps.csv")) == 8


def test_affinity_samples(tiny):
    data, labels = tiny
    manifest = DatasetManifest.load(data)
    dataset = AffinityDataset(manifest, labels, crop=48, scale_range=(0.9, 1.1))
    first = dataset.sample(0, torch.Generator().manual_seed(0))
    assert tuple(first["image"].shape) == (3, 48, 48) and tuple(first["labels"].shape) == (12, 12)
    assert torch.all(first["labels"] == 255)  # the all-ignore image
    second = dataset.sample(1, torch.Generator().manual_seed(0))
    values = set(second["labels"].unique().tolist())
    assert values <= {0, *manifest.class_labels()[dataset.ids[1]], 255} and len(values - {255}) >= 1
    again = dataset.sample(1, torch.Generator().manual_seed(0))
    assert torch.equal(again["image"], second["image"]) and torch.equal(again["labels"], second["labels"])


def test_bad_labels_and_settings(tiny, tmp_path):
    data, labels = tiny
    broken = tmp_path / "ir"
    shutil.copytree(labels, broken)
    ids = DatasetManifest.load(data).ids("train_aug")
    (broken / f"{ids[3]}.png").unlink()
    with pytest.raises(DatasetError, match=rf"no label PNG for 1 of 16 train_aug ids: {ids[3]} \(run ir-labels first\)"):
        train_irn(tiny_params(), data, broken, tmp_path / "a", workers=1)
    save_label_png(broken / f"{ids[3]}.png", np.zeros((5, 7), np.uint8))
    with pytest.raises(DatasetError, match=rf"{ids[3]}.png: label size \(5, 7\) != image size") as err:
        train_irn(tiny_params(), data, broken, tmp_path / "b", workers=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="irn.crop 32 / irn.radius 10: a 8x8 grid is too small for radius 10"):
        train_irn(tiny_params(crop=32, radius=10), data, labels, tmp_path / "c", workers=1)
