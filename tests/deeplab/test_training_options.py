"""The two trainer options DeepLab needs (docs/method.md G.2): gradient accumulation (iter_size) and a poly lr
recomputed every m steps (LR_DECAY)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sipe.training import TrainConfig, TrainingError, fit, make_sgd, micro_batches, poly_lr


class Data:
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 5, generator=g)
        self.y = torch.randint(0, 3, (8,), generator=g)

    def __len__(self):
        return 8

    def sample(self, index, generator):
        return {"x": self.x[index] + 0.1 * torch.randn(5, generator=generator), "y": self.y[index], "id": f"s{index}"}


def _train(tmp_path, name, **config):
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    optimizer = make_sgd([{"params": model.parameters()}], lr=0.1, weight_decay=0.0, momentum=0.9)

    def step(m, batch):
        assert len(batch["id"]) == batch["x"].shape[0]  # per-sample lists are cut with the tensors
        return {"loss": F.cross_entropy(m(batch["x"]), batch["y"])}

    cfg = TrainConfig(max_step=config.pop("max_step", 6), batch_size=4, grad_clip=None, device="cpu", **config)
    fit(model, optimizer, Data(), step, cfg, resume_path=tmp_path / f"{name}.pt", log_path=tmp_path / f"{name}.csv")
    return model, pd.read_csv(tmp_path / f"{name}.csv")


def test_accumulating_equal_micro_batches_equals_the_full_batch(tmp_path):
    whole, whole_log = _train(tmp_path, "whole")
    split, split_log = _train(tmp_path, "split", accumulate=2)
    # mean loss of 2 micro-batches of 2 == mean loss of the batch of 4: the same gradient, the same steps
    torch.testing.assert_close(split.weight, whole.weight, rtol=1e-5, atol=1e-6)
    assert split_log["loss"].tolist() == pytest.approx(whole_log["loss"].tolist(), rel=1e-5)


def test_lr_is_recomputed_every_m_steps(tmp_path):
    _, log = _train(tmp_path, "decay", max_step=12, lr_every=5)
    expected = [poly_lr(0.1, t - t % 5, 12, 0.9) for t in range(12)]
    assert log["lr"].tolist() == pytest.approx(expected)
    assert log["lr"].nunique() == 3


def test_micro_batches_cut_tensors_and_lists():
    batch = {"image": torch.arange(6).view(6, 1), "id": list("abcdef"), "pair": [torch.zeros(6), torch.ones(6, 2)]}
    parts = micro_batches(batch, 3)
    assert [p["id"] for p in parts] == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert parts[2]["image"].tolist() == [[4], [5]] and parts[1]["pair"][1].shape == (2, 2)


def test_batch_must_split_evenly(tmp_path):
    with pytest.raises(TrainingError, match="batch_size 4 must be a multiple of accumulate 3"):
        _train(tmp_path, "bad", accumulate=3)
