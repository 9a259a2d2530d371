"""Backbone pre-training (sipe.weights: pretrain) and SIPE training started from its weights."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from sipe.errors import ConfigError
from sipe.models.backbone import build_resnet
from sipe.stages.pretrain import pretrain_backbone
from sipe.stages.train_sipe import build_sipe, train_sipe
from tests.tiny import tiny_params


def _params(**pretrain):
    params = tiny_params(weights="pretrain")
    params["pretrain"].update({"epochs": 2, "batch_size": 4, **pretrain})
    return params


def test_pretrained_backbone_is_torchvision_format_and_starts_sipe(tiny_data, tmp_path):
    params = _params()
    weights = pretrain_backbone(params, tiny_data, tmp_path / "pretrain", workers=1)
    assert weights == tmp_path / "pretrain/backbone.pth"
    # the layout of every trainer (sipe.trainer)
    assert sorted(p.name for p in (tmp_path / "pretrain").iterdir()) == ["backbone.pth", "train"]
    assert sorted(p.name for p in (tmp_path / "pretrain/train").iterdir()) == ["loss.png", "steps.csv", "train.json"]
    state = torch.load(weights, weights_only=True)
    assert not any(k.startswith("fc.") for k in state) and "layer4.1.conv2.weight" in state
    steps = pd.read_csv(tmp_path / "pretrain/train/steps.csv")
    assert list(steps["step"]) == list(range(1, 9))  # 16 images // 4 = 4 steps per epoch, 2 epochs

    # The weights load into the stride-16 SIPE backbone unchanged (layer4 stride 1 keeps the shapes).
    backbone = build_resnet("resnet18", weights)
    torch.testing.assert_close(backbone.state_dict()["layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])

    model_path = train_sipe(params, tiny_data, tmp_path / "sipe", workers=1, init=weights)
    assert model_path.is_file()


def test_pretrain_weights_need_the_file():
    with pytest.raises(ConfigError, match="sipe.weights is 'pretrain': give the pre-trained backbone file with --init"):
        build_sipe(tiny_params(weights="pretrain")["sipe"], 4)
