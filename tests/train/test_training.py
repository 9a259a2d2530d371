"""The generic training machinery on a small stand-in network: LR schedule, optimizer, clipping,
checkpoints and exact resuming."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sipe.errors import ConfigError, DatasetError, one_line
from sipe.io import save_torch
from sipe.training import (
    EpochBatchSampler,
    RunBatchSampler,
    TrainConfig,
    TrainingError,
    epoch_order,
    fit,
    load_checkpoint,
    make_sgd,
    poly_lr,
    rng_state,
    sample_seed,
    seed_everything,
    set_poly_lr,
    set_rng_state,
)


class Toy(nn.Module):
    """A stand-in classifier: conv → ReLU → global average pool → linear (two parameter groups)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean(dim=(2, 3)))


class ToyData:
    """Fixed base images per index plus per-sample random noise and flip drawn from the given generator."""

    def __init__(self, length: int = 10, fail_at: int | None = None):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(length, 3, 8, 8, generator=g)
        self.y = (torch.rand(length, 3, generator=g) > 0.5).float()
        self.fail_at = fail_at

    def __len__(self):
        return len(self.x)

    def sample(self, index, generator):
        if index == self.fail_at:
            raise DatasetError(f"/data/img{index}.jpg: cannot read image (broken)")
        x = self.x[index] + 0.3 * torch.randn(3, 8, 8, generator=generator)
        if torch.rand((), generator=generator) < 0.5:
            x = x.flip(-1)
        return {"x": x, "y": self.y[index]}


def toy_step(model, batch):
    return {"loss": F.multilabel_soft_margin_loss(model(batch["x"]), batch["y"])}


class Interrupt(Exception):
    pass


def run(out, *, max_step=12, batch_size=4, seed=0, workers=0, interrupt_at=None, data=None, step_fn=toy_step,
        momentum=0.9, **config):
    """Train a freshly built Toy (init seeded by ``seed``) into ``out``; return (model, optimizer, result)."""
    seed_everything(seed)
    model = Toy()
    optimizer = make_sgd([{"params": model.conv.parameters(), "lr_mult": 1, "name": "backbone"},
                          {"params": model.head.parameters(), "lr_mult": 10, "name": "new"}],
                         lr=0.05, weight_decay=1e-4, momentum=momentum)
    cfg = TrainConfig(max_step=max_step, batch_size=batch_size, seed=seed, checkpoint_every=config.pop("every", 5),
                      loader_workers=workers, device="cpu", **config)

    def on_step(step, row):
        if step == interrupt_at:
            raise Interrupt(step)

    result = fit(model, optimizer, data or ToyData(), step_fn, cfg, resume_path=out / "resume.pt",
                 log_path=out / "steps.csv", fingerprint={"toy": 1}, on_step=on_step)
    return model, optimizer, result


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# LR schedule and optimizer
# ---------------------------------------------------------------------------------------------

def test_poly_lr_values():
    assert poly_lr(0.1, 0, 100, 0.9) == 0.1  # the first step uses the full lr
    assert poly_lr(0.1, 50, 100, 0.9) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert poly_lr(0.1, 99, 100, 0.9) == pytest.approx(0.1 * 0.01 ** 0.9)
    assert poly_lr(0.1, 100, 100, 0.9) == 0.0 and poly_lr(0.1, 120, 100, 0.9) == 0.0
    assert poly_lr(1.0, 25, 100, 1.0) == pytest.approx(0.75)


def test_sgd_groups_carry_the_lr_multiplier_weight_decay_and_the_momentum_quirk():
    model = Toy()
    model.conv.bias.requires_grad_(False)
    opt = make_sgd([{"params": model.conv.parameters(), "name": "backbone"},
                    {"params": model.head.parameters(), "lr_mult": 10, "name": "new"}],
                   lr=0.1, weight_decay=1e-4, momentum=1e-4)
    g0, g1 = opt.param_groups
    assert (g0["name"], g0["lr"], g1["name"], g1["lr"]) == ("backbone", 0.1, "new", pytest.approx(1.0))
    assert g0["momentum"] == g1["momentum"] == 1e-4  # docs/method.md C: the reference's effective momentum
    assert g0["weight_decay"] == g1["weight_decay"] == 1e-4
    assert len(g0["params"]) == 1  # frozen parameters are left out
    lr = set_poly_lr(opt, 30, 100, 0.9)
    assert lr == pytest.approx(0.1 * 0.7 ** 0.9) and g1["lr"] == pytest.approx(0.7 ** 0.9)


def test_two_sgd_steps_match_the_reference_update_with_momentum_1e_4():
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = make_sgd([{"params": [p]}], lr=0.1, weight_decay=0.01, momentum=1e-4)
    g1, g2 = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64), torch.tensor([-0.2, 0.4, 0.1], dtype=torch.float64)
    p0 = p.detach().clone()

    set_poly_lr(opt, 0, 10, 0.9)
    p.grad = g1.clone()
    opt.step()
    buf = g1 + 0.01 * p0  # weight decay joins the gradient; the first step's buffer is the gradient
    p1 = p0 - 0.1 * buf
    torch.testing.assert_close(p.detach(), p1)

    set_poly_lr(opt, 1, 10, 0.9)
    p.grad = g2.clone()
    opt.step()
    buf = 1e-4 * buf + (g2 + 0.01 * p1)
    torch.testing.assert_close(p.detach(), p1 - 0.1 * 0.9 ** 0.9 * buf)


def test_fit_sets_the_poly_lr_before_each_step(tmp_path):
    _, opt, result = run(tmp_path, max_step=9, batch_size=4, poly_power=0.9)
    table = pd.read_csv(tmp_path / "steps.csv")
    assert list(table["step"]) == list(range(1, 10))
    assert table["lr"].tolist() == pytest.approx([poly_lr(0.05, t, 9, 0.9) for t in range(9)])
    assert table["lr"].iloc[0] == 0.05
    assert list(table["epoch"]) == [0, 0, 1, 1, 2, 2, 3, 3, 4]  # 10 samples, batch 4, drop_last: 2 steps/epoch
    assert {"loss", "time_s"} <= set(table.columns)
    assert result.steps == 9 and result.resumed_from == 0 and result.images_per_s > 0


def test_gradients_are_clipped_to_the_global_l2_norm(tmp_path):
    class Lin(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(4))

    model = Lin()
    opt = make_sgd([{"params": model.parameters()}], lr=0.1, weight_decay=0.0, momentum=0.0)

    def step(m, batch):
        return {"loss": 1000.0 * m.w.sum()}  # gradient 1000 per entry: global norm 2000

    cfg = TrainConfig(max_step=1, batch_size=2, grad_clip=1.0, device="cpu")
    fit(model, opt, ToyData(4), step, cfg, resume_path=tmp_path / "r.pt", log_path=tmp_path / "s.csv")
    torch.testing.assert_close(model.w.detach(), torch.full((4,), -0.1 * 0.5))  # clipped to norm 1: 0.5 each


# ---------------------------------------------------------------------------------------------
# Data order and RNG state
# ---------------------------------------------------------------------------------------------

def test_epoch_batches_are_a_function_of_seed_and_epoch():
    def keys(seed, epoch, start=0):
        return list(EpochBatchSampler(10, 3, seed, epoch, start))

    a = keys(0, 0)
    assert len(a) == 3 and all(len(b) == 3 for b in a)  # drop_last: 10 // 3 batches
    assert a == keys(0, 0) and a != keys(0, 1) and a != keys(1, 0)
    assert keys(0, 0, start=2) == a[2:]  # resuming mid-epoch continues the same order
    indices = [i for b in a for i, _ in b]
    assert len(set(indices)) == 9 and set(indices) <= set(range(10))
    assert all(s == sample_seed(0, 0, i) for b in a for i, s in b)
    assert sorted(epoch_order(10, 0, 4).tolist()) == list(range(10))
    assert sample_seed(0, 1, 2) != sample_seed(0, 2, 1)


def test_run_batches_continue_across_epochs_from_any_step():
    per_epoch = [list(EpochBatchSampler(10, 3, 7, e)) for e in range(4)]
    flat = [b for epoch in per_epoch for b in epoch]  # 3 batches per epoch
    assert list(RunBatchSampler(10, 3, 7, 0, 12)) == flat
    assert list(RunBatchSampler(10, 3, 7, 4, 10)) == flat[4:10]
    assert len(RunBatchSampler(10, 3, 7, 4, 10)) == 6 and list(RunBatchSampler(10, 3, 7, 5, 5)) == []


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    seed_everything(5)
    save_torch(tmp_path / "c.pt", {"rng": rng_state(), "step": 3})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(10), np.random.rand(10), random.random()
    state = load_checkpoint(tmp_path / "c.pt")  # weights_only=True
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


# ---------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_run_gives_bit_identical_weights(tmp_path, workers):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    model_a, opt_a, result_a = run(straight, max_step=13, workers=workers)
    assert not (straight / "resume.pt").exists() or load_checkpoint(straight / "resume.pt")["step"] == 10

    with pytest.raises(Interrupt):  # killed mid-epoch at step 8; the last checkpoint is step 5
        run(killed, max_step=13, workers=workers, interrupt_at=8)
    assert load_checkpoint(killed / "resume.pt")["step"] == 5
    assert not (killed / "steps.csv").exists()  # the log is only moved into place at the end
    model_b, opt_b, result_b = run(killed, max_step=13, workers=workers)

    assert result_b.resumed_from == 5 and result_b.session_steps == 8 and result_b.steps == 13
    assert states_equal(model_a.state_dict(), model_b.state_dict())
    buf_a = [opt_a.state[p]["momentum_buffer"] for p in model_a.parameters()]
    buf_b = [opt_b.state[p]["momentum_buffer"] for p in model_b.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(buf_a, buf_b))
    log_a, log_b = pd.read_csv(straight / "steps.csv"), pd.read_csv(killed / "steps.csv")
    assert list(log_b["step"]) == list(range(1, 14))  # rows 6..8 of the killed session were replaced
    assert log_a.drop(columns="time_s").equals(log_b.drop(columns="time_s"))


def test_checkpoint_from_other_settings_is_ignored(tmp_path):
    with pytest.raises(Interrupt):
        run(tmp_path, max_step=12, seed=0, interrupt_at=6)
    _, _, result = run(tmp_path, max_step=12, seed=1)  # a new seed: start afresh
    assert result.resumed_from == 0 and result.session_steps == 12
    assert list(pd.read_csv(tmp_path / "steps.csv")["step"]) == list(range(1, 13))


def test_corrupt_checkpoint_is_one_line(tmp_path):
    (tmp_path / "resume.pt").write_bytes(b"garbage")
    with pytest.raises(TrainingError) as info:
        run(tmp_path)
    assert "\n" not in str(info.value) and "resume.pt" in str(info.value) and "delete it" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------

def test_diverging_loss_stops_with_one_line(tmp_path):
    def step(model, batch):
        return {"loss": toy_step(model, batch)["loss"] * math.nan}

    with pytest.raises(TrainingError, match=r"diverged: loss is nan at step 1$"):
        run(tmp_path, step_fn=step)


@pytest.mark.parametrize("workers", [0, 1])
def test_dataset_error_in_a_loader_worker_stays_one_line(tmp_path, workers):
    with pytest.raises(DatasetError) as info:
        run(tmp_path, data=ToyData(10, fail_at=3), workers=workers)
    assert str(info.value) == "/data/img3.jpg: cannot read image (broken)"


def test_one_line_of_an_exception():
    assert one_line(ValueError("first\nsecond")) == "first" and one_line(KeyError()) == "KeyError"
    assert one_line(ValueError("x" * 50), limit=20) == "x" * 17 + "..."
    wrapped = DatasetError("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                           "last):\n  File \"x.py\", line 1\nsipe.errors.DatasetError: /a.jpg: broken")
    assert one_line(wrapped) == "/a.jpg: broken"


def test_too_few_samples_for_one_batch(tmp_path):
    with pytest.raises(TrainingError, match="fewer than one batch"):
        run(tmp_path, data=ToyData(3), batch_size=4)


# ---------------------------------------------------------------------------------------------
# Device and precision
# ---------------------------------------------------------------------------------------------

def test_device_selection():
    from sipe.device import select_device

    assert select_device("cpu") == torch.device("cpu")
    assert select_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(ConfigError):
        select_device("tpu-ish")


def test_bf16_autocast_and_channels_last_run(tmp_path):
    model, _, result = run(tmp_path, max_step=4, precision="bf16", channels_last=True)
    table = pd.read_csv(tmp_path / "steps.csv")
    assert len(table) == 4 and table["loss"].notna().all() and (table["grad_norm"] > 0).all()
    assert model.conv.weight.dtype == torch.float32  # autocast keeps fp32 master weights
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
