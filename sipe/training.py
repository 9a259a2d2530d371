"""The training loop every trainer runs (pretrain, SIPE, IRN, DeepLab; the stages go through :mod:`sipe.trainer`).

What it provides (docs/method.md C for the reference behaviour):

* :func:`poly_lr` and :func:`make_sgd`, SGD with parameter groups whose ``lr_mult`` scales the base
  rate and the reference's momentum quirk (``momentum=1e-4``) as an explicit argument;
* :func:`fit`, the loop over three parts: :class:`ResumePoint` (the resumable checkpoint),
  :class:`StepLog` (per-step losses in a CSV, the progress bar and log lines) and :class:`Stepper`
  (one step: poly LR set before it — the first step uses the full rate —, forward and backward per
  micro-batch under bf16 autocast if asked, global L2 gradient clipping, SGD).

Reproducibility and resuming. The data order of epoch ``e`` is a permutation drawn from a
``torch.Generator`` seeded by (seed, e), and sample ``i`` of epoch ``e`` is augmented with a
generator seeded by (seed, e, i) (:func:`sample_seed`). Nothing in the loop depends on how many
steps ran in this process, so a run resumed from the checkpoint of step k replays steps k+1… exactly
as the uninterrupted run would: on CPU with a fixed seed the final weights are bit-identical.
Checkpoints hold the model, the optimizer, the step, the data position and the global RNG states
(torch CPU/CUDA, numpy, python) as tensors and plain lists, written atomically and read with
``torch.load(weights_only=True)``.

Datasets used with :func:`fit` implement ``len(ds)`` and ``ds.sample(index, generator)``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from sipe import distributed
from sipe.device import select_device
from sipe.errors import SipeError, one_line
from sipe.io import atomic_path, read_torch_file, save_torch

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class TrainingError(SipeError):
    """Training cannot go on: the loss diverged, a checkpoint is unusable, a setting is impossible."""


# ----------------------------------------------------------------------------------------------
# Precision, seeding, data order
# ----------------------------------------------------------------------------------------------

def autocast_context(device: torch.device, precision: str):
    """bf16 autocast for ``precision == "bf16"``, else a no-op context (fp32)."""
    if precision not in ("fp32", "bf16"):
        raise TrainingError(f"precision must be fp32 or bf16, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def seed_everything(seed: int) -> None:
    """Seed the global python, numpy and torch (CPU and CUDA) RNGs, e.g. before building a model."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_ORDER_STREAM, _SAMPLE_STREAM = 0, 1


def _derived_seed(*words: int) -> int:
    return int(np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)[0])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The 64-bit seed of sample ``index``'s augmentation in ``epoch``: a pure function of the three."""
    return _derived_seed(seed, epoch, _SAMPLE_STREAM, index)


def epoch_order(length: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of ``epoch``: a permutation of range(length) from a generator seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(_derived_seed(seed, epoch, _ORDER_STREAM))
    return torch.randperm(length, generator=generator)


# ----------------------------------------------------------------------------------------------
# Learning rate and optimizer
# ----------------------------------------------------------------------------------------------

def poly_lr(base: float, step: int, max_step: int, power: float) -> float:
    """lr_t = base · (1 − t/max_step)^power (docs/method.md C); t = 0 gives ``base``, t ≥ max_step gives 0."""
    if max_step <= 0:
        raise ValueError("max_step must be positive")
    return base * max(0.0, 1.0 - step / max_step) ** power


def make_sgd(groups: Iterable[dict], lr: float, weight_decay: float, momentum: float) -> torch.optim.SGD:
    """SGD over parameter groups ``{"params": ..., "lr_mult": m, "name": ...}`` (lr = ``lr``·m).

    ``momentum`` is explicit because the reference's PolyOptimizerSGD passes its arguments so that
    the effective momentum is 1e-4 (docs/method.md C, H.1 item 2); pass 1e-4 to reproduce it, 0.9 for textbook SGD.
    Parameters that never get a gradient are skipped by SGD (no weight decay either), as in the reference.
    """
    param_groups = []
    for index, group in enumerate(groups):
        group = dict(group)
        params = [p for p in group.pop("params") if p.requires_grad]
        mult = float(group.pop("lr_mult", 1.0))
        name = group.pop("name", f"group{index}")
        param_groups.append({"params": params, "lr": lr * mult, "initial_lr": lr * mult, "lr_mult": mult,
                             "name": name, **group})
    return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def set_poly_lr(optimizer: torch.optim.Optimizer, step: int, max_step: int, power: float) -> float:
    """Set every group's lr to its ``initial_lr`` scaled by the poly factor of ``step``; return group 0's lr."""
    factor = poly_lr(1.0, step, max_step, power)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]


# ----------------------------------------------------------------------------------------------
# RNG states and the resumable checkpoint (weights_only-loadable: tensors, numbers, strings, lists)
# ----------------------------------------------------------------------------------------------

def rng_state() -> dict:
    """The global RNG states as weights_only-safe values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True``; one-line :class:`TrainingError` if it is unusable."""
    return read_torch_file(path, "checkpoint", TrainingError)


class ResumePoint:
    """The resumable checkpoint of a run at ``path``, tied to the settings text ``fingerprint``."""

    def __init__(self, path: Path, fingerprint: str, steps_per_epoch: int, seed: int):
        self.path, self.fingerprint, self.steps_per_epoch, self.seed = Path(path), fingerprint, steps_per_epoch, seed
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, max_step: int) -> tuple[int, float]:
        """Load a checkpoint of the same settings into ``model``, ``optimizer`` and the global RNGs and return
        (its step, the seconds trained before); (0, 0.0) when there is none or it has other settings."""
        if not self.path.exists():
            return 0, 0.0
        try:
            state = load_checkpoint(self.path)
        except TrainingError as exc:
            raise TrainingError(f"{exc}; delete it to start afresh") from None
        if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != self.fingerprint:
            log.warning("%s: checkpoint from other settings; starting afresh", self.path)
            return 0, 0.0
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        log.info("%s: resuming at step %d of %d", self.path, int(state["step"]), max_step)
        return int(state["step"]), float(state.get("elapsed_s", 0.0))

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, elapsed: float) -> None:
        """Write the state after ``step`` steps (atomically, :func:`sipe.io.save_torch`)."""
        epoch = step // self.steps_per_epoch
        save_torch(self.path, {
            "format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "step": step,
            "data": {"epoch": epoch, "batch_in_epoch": step - epoch * self.steps_per_epoch, "seed": self.seed},
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(),
            "elapsed_s": elapsed})


# ----------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------

class _Seeded(Dataset):
    """Maps a key (index, sample_seed) to ``base.sample(index, Generator(sample_seed))``."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, seed = key
        return self.base.sample(int(index), torch.Generator().manual_seed(int(seed)))


class EpochBatchSampler(Sampler):
    """The batches of one epoch (drop_last), from batch ``start_batch`` on, as lists of (index, sample_seed).

    With ``world_size`` > 1 each global batch of ``batch_size`` is cut into equal contiguous slices and
    rank ``rank`` gets its own (:func:`sipe.distributed.rank_slice`); the slices of all ranks together
    are the single-process batch.
    """

    def __init__(self, length: int, batch_size: int, seed: int, epoch: int, start_batch: int = 0, *,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise TrainingError(f"batch_size {batch_size} is not a multiple of the {world_size} training processes")
        self.length, self.batch_size, self.seed, self.epoch, self.start_batch = length, batch_size, seed, epoch, start_batch
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.length // self.batch_size - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.length, self.seed, self.epoch).tolist()
        for b in range(self.start_batch, self.length // self.batch_size):
            indices = distributed.rank_slice(order[b * self.batch_size:(b + 1) * self.batch_size], self.rank,
                                             self.world_size)
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in indices]


class RunBatchSampler(Sampler):
    """The batches of steps ``start_step`` … ``max_step`` − 1 across epochs (each epoch as :class:`EpochBatchSampler`).

    One sampler for the whole run, so DataLoader workers start once per session, not once per epoch.
    """

    def __init__(self, length: int, batch_size: int, seed: int, start_step: int, max_step: int, *,
                 rank: int = 0, world_size: int = 1):
        self.length, self.batch_size, self.seed, self.start_step, self.max_step = length, batch_size, seed, start_step, max_step
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.max_step - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_epoch = self.length // self.batch_size
        step = self.start_step
        while step < self.max_step:
            epoch = step // per_epoch
            for batch in EpochBatchSampler(self.length, self.batch_size, self.seed, epoch, step - epoch * per_epoch,
                                           rank=self.rank, world_size=self.world_size):
                yield batch
                step += 1
                if step >= self.max_step:
                    return


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move the tensors of a (nested) batch to ``device``; 4-D float tensors become channels_last if asked."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


def micro_batches(batch: Any, parts: int) -> list:
    """``batch`` cut into ``parts`` equal micro-batches along the sample axis.

    Dicts, and lists/tuples of tensors or containers, are structure (cut element by element); tensors
    and lists of plain values (e.g. the ids) are per-sample and get sliced.
    """
    if parts == 1:
        return [batch]
    if isinstance(batch, dict):
        cut = {k: micro_batches(v, parts) for k, v in batch.items()}
        return [{k: v[i] for k, v in cut.items()} for i in range(parts)]
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(v, (torch.Tensor, dict, list, tuple))
                                                        for v in batch):
        cut = [micro_batches(v, parts) for v in batch]
        return [type(batch)(v[i] for v in cut) for i in range(parts)]
    size = len(batch) // parts
    return [batch[i * size:(i + 1) * size] for i in range(parts)]


def _loader(dataset, config: TrainConfig, world: distributed.World, start_step: int, collate_fn) -> DataLoader:
    """The batches of steps ``start_step`` … ``max_step`` − 1 (this rank's slices), loaded by
    ``config.loader_workers`` processes."""
    sampler = RunBatchSampler(len(dataset), config.batch_size, config.seed, start_step, config.max_step,
                              rank=world.rank, world_size=world.size)
    return DataLoader(_Seeded(dataset), batch_sampler=sampler, num_workers=config.loader_workers,
                      collate_fn=collate_fn, pin_memory=world.device.type == "cuda", persistent_workers=False,
                      generator=torch.Generator().manual_seed(config.seed))


def _next_batch(batches: Iterator) -> Any:
    """The next batch; a dataset error raised in a loader worker stays one line (its own message)."""
    try:
        return next(batches)
    except SipeError as exc:
        raise (type(exc)(one_line(exc)) if "\n" in str(exc) else exc) from None


# ----------------------------------------------------------------------------------------------
# The loop: settings, step log, one step, fit
# ----------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Settings of :func:`fit`. ``max_step`` optimizer steps of ``batch_size`` samples (drop_last).

    With ``accumulate`` = k > 1 each step's batch is split into k equal micro-batches (``batch_size``
    must be a multiple of k); each gets its own forward and ``backward(loss / k)``, so the step sums
    their gradients (deeplab-pytorch's ``iter_size``). ``lr_every`` = m holds the poly lr of step
    t at its value for t − t mod m (deeplab-pytorch's ``LR_DECAY``).
    """

    max_step: int
    batch_size: int
    seed: int = 0
    poly_power: float = 0.9
    grad_clip: float | None = 1.0          # global L2 max_norm over all parameters; None/0 = off
    checkpoint_every: int = 50             # steps between resumable checkpoints
    loader_workers: int = 0
    precision: str = "fp32"                # fp32 | bf16 (autocast)
    channels_last: bool = False
    device: str | None = None              # None = CUDA if available else CPU
    desc: str = "train"                    # progress bar label
    log_every: int = 0                     # steps between log lines; 0 = about 20 lines per run
    accumulate: int = 1                    # micro-batches per step (gradient accumulation, docs/method.md G.2 iter_size)
    lr_every: int = 1                      # steps between poly-lr updates (docs/method.md G.2: 10)


@dataclass
class TrainResult:
    steps: int                   # optimizer steps done in total (= max_step)
    resumed_from: int            # step of the checkpoint this run started from (0 = fresh)
    wall_s: float                # seconds of training over all sessions (checkpoint-accumulated)
    session_steps: int           # steps done in this process
    session_s: float             # seconds this process spent in the loop
    images_per_s: float          # this session: samples / s, data loading included
    steps_per_s: float
    final: dict                  # mean of each logged loss over the last epoch (or all steps if fewer)
    last: dict                   # the last step's row
    device: str
    columns: list = field(default_factory=list)
    processes: int = 1           # data-parallel training processes (torchrun's WORLD_SIZE)


StepFn = Callable[[torch.nn.Module, Any], dict]


def _fingerprint_text(fingerprint: dict | None) -> str:
    return json.dumps(fingerprint or {}, sort_keys=True, default=str)


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep the header and the rows with step ≤ ``last_step`` of a live CSV log."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        path.unlink()
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_step]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        csv.writer(handle).writerows(keep)


class StepLog:
    """The record of a run: one row per step (step, epoch, lr, the losses, grad_norm, time_s) appended to
    ``<path>.partial`` and renamed to ``path`` by :meth:`finish`, the progress bar, and a log line every
    ``config.log_every`` steps. Only the main process writes; a resumed run keeps the rows up to its start."""

    def __init__(self, path: Path, config: TrainConfig, main: bool, start_step: int, elapsed_before: float):
        self.path, self.config, self.main = Path(path), config, main
        self.live = self.path.with_name(self.path.name + ".partial")
        self.start_step, self.elapsed_before = start_step, elapsed_before
        self.log_every = config.log_every or max(1, config.max_step // 20)
        self.columns: list[str] | None = None
        self.handle, self.last, self.seconds = None, {}, 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if main:
            self._reopen()
        self.bar = tqdm(total=config.max_step, initial=start_step, desc=config.desc, unit="step", file=sys.stderr,
                        mininterval=1.0, dynamic_ncols=True, disable=not main)
        self.started = time.perf_counter()

    def _reopen(self) -> None:
        if self.start_step == 0:
            self.live.unlink(missing_ok=True)
        else:
            if not self.live.exists() and self.path.exists():  # killed after the log was renamed into place
                os.replace(self.path, self.live)
            _truncate_log(self.live, self.start_step)
            if self.live.exists():
                with self.live.open(newline="") as handle:
                    self.columns = next(csv.reader(handle), None)
        self.handle = self.live.open("a", newline="")
        self.writer = csv.writer(self.handle)

    @property
    def elapsed(self) -> float:
        """Seconds trained over all sessions, up to the last row."""
        return self.elapsed_before + self.seconds

    def record(self, row: dict) -> dict:
        """Add ``time_s`` to the step's ``row``, write it, advance the bar and log; return the row."""
        self.seconds = time.perf_counter() - self.started
        row["time_s"] = round(self.elapsed, 4)
        if self.handle is not None:
            if self.columns is None:
                self.columns = list(row)
                self.writer.writerow(self.columns)
            self.writer.writerow([row.get(c, "") for c in self.columns])
            self.handle.flush()
        self.last = row
        step, config = row["step"], self.config
        rate = (step - self.start_step) * config.batch_size / self.seconds if self.seconds > 0 else 0.0
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{rate:.1f}", refresh=False)
        if self.main and (step % self.log_every == 0 or step == config.max_step):
            log.info("%s step %d/%d epoch %d lr %.4g %s %.1f img/s", config.desc, step, config.max_step, row["epoch"],
                     row["lr"], " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("loss")), rate)
        return row

    def close(self) -> None:
        self.bar.close()
        if self.handle is not None:
            self.handle.close()

    def finish(self, steps: int, steps_per_epoch: int, world: distributed.World) -> TrainResult:
        """Move the log into place and sum the run up; the final losses are the means over the last epoch."""
        import pandas as pd

        session_s = time.perf_counter() - self.started
        os.replace(self.live, self.path)
        table = pd.read_csv(self.path)
        tail = table[table["step"] > max(0, self.config.max_step - steps_per_epoch)]
        done = steps - self.start_step
        return TrainResult(
            steps=steps, resumed_from=self.start_step, wall_s=self.elapsed_before + session_s, session_steps=done,
            session_s=session_s, images_per_s=done * self.config.batch_size / session_s if session_s > 0 else 0.0,
            steps_per_s=done / session_s if session_s > 0 else 0.0, last=self.last, device=str(world.device),
            final={c: float(tail[c].mean()) for c in table.columns if c.startswith("loss")},
            columns=list(table.columns), processes=world.size)


class Stepper:
    """One optimizer step of ``step_fn`` on ``net`` (``model``, wrapped for DDP under torchrun)."""

    def __init__(self, net: torch.nn.Module, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 step_fn: StepFn, config: TrainConfig, world: distributed.World, steps_per_epoch: int):
        self.net, self.model, self.optimizer, self.step_fn = net, model, optimizer, step_fn
        self.config, self.world, self.steps_per_epoch = config, world, steps_per_epoch

    def __call__(self, batch: Any, step: int) -> dict:
        """Step ``step`` + 1 on ``batch``; returns its row (step, epoch, lr, the losses, grad_norm)."""
        config, optimizer = self.config, self.optimizer
        lr = set_poly_lr(optimizer, step - step % config.lr_every, config.max_step, config.poly_power)
        batch = to_device(batch, self.world.device, config.channels_last)
        optimizer.zero_grad(set_to_none=True)
        parts = [self._backward(micro, index == config.accumulate - 1, step)
                 for index, micro in enumerate(micro_batches(batch, config.accumulate))]
        losses = distributed.average({k: torch.stack([p[k] for p in parts]).mean() for k in parts[0]}, self.world)
        # Global L2 norm over all parameters (logged before clipping); no clipping when grad_clip is off.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip or math.inf)
        optimizer.step()
        row = {"step": step + 1, "epoch": step // self.steps_per_epoch, "lr": lr}
        row.update({k: float(v.detach().float().item()) for k, v in losses.items()})
        row["grad_norm"] = float(grad_norm)
        return row

    def _backward(self, micro: Any, last: bool, step: int) -> dict:
        """Forward and ``backward(loss / accumulate)`` of one micro-batch; its detached losses."""
        # Under DDP the gradients are all-reduced once per step, with the last micro-batch's backward.
        with contextlib.nullcontext() if last else distributed.no_sync(self.net):
            with autocast_context(self.world.device, self.config.precision):
                losses = self.step_fn(self.net, micro)
            loss = losses["loss"]
            if not torch.isfinite(loss.detach()).item():
                raise TrainingError(f"training diverged: loss is {loss.item()} at step {step + 1}")
            (loss / self.config.accumulate).backward()
        return {k: v.detach().float() for k, v in losses.items()}


def _steps_per_epoch(config: TrainConfig, length: int) -> int:
    """Batches per epoch of ``length`` samples; :class:`TrainingError` for settings no run can follow."""
    steps_per_epoch = length // config.batch_size
    if steps_per_epoch < 1:
        raise TrainingError(f"{length} training samples are fewer than one batch of {config.batch_size}")
    if config.max_step < 1:
        raise TrainingError(f"max_step must be at least 1, got {config.max_step}")
    if config.accumulate < 1 or config.batch_size % config.accumulate or config.lr_every < 1:
        raise TrainingError(f"batch_size {config.batch_size} must be a multiple of accumulate {config.accumulate} "
                            f"(>= 1), and lr_every ({config.lr_every}) at least 1")
    return steps_per_epoch


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset, step_fn: StepFn, config: TrainConfig,
        *, resume_path: Path, log_path: Path, fingerprint: dict | None = None, collate_fn=None,
        on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``model`` for ``config.max_step`` steps; resume from ``resume_path`` when it holds a matching checkpoint.

    ``step_fn(model, batch)`` runs the forward pass (under autocast) and returns a dict of scalar
    tensors with the total ``"loss"`` to minimise and any parts to log. Every ``checkpoint_every``
    steps the state goes to ``resume_path``; a checkpoint whose ``fingerprint`` (the settings that
    shape the run) differs is ignored with a warning. The rows of :class:`StepLog` go to ``log_path``;
    ``resume_path`` is left for the caller to delete once its outputs are written. ``on_step(step,
    row)`` runs after each step (tests interrupt the run from it).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the same call trains data-parallel (:mod:`sipe.distributed`):
    NCCL on GPUs (``cuda:LOCAL_RANK``), gloo on CPU; every rank takes its equal slice of each global
    batch of ``batch_size`` (which must be a multiple of the processes × ``accumulate``), DDP averages
    the gradients, and the logged losses are the means over ranks, so the run matches one process
    with the whole batch. Every rank reads the checkpoint when resuming; rank 0 alone writes
    checkpoints, the step log and the progress bar. **Only rank 0 returns**: the other ranks' processes
    end (exit status 0) once training is done, so what the caller does after ``fit`` happens once.
    """
    steps_per_epoch = _steps_per_epoch(config, len(dataset))
    world = distributed.join(select_device(config.device))
    if config.batch_size % (world.size * config.accumulate):
        raise TrainingError(f"batch_size {config.batch_size} must be a multiple of the {world.size} training "
                            f"processes times accumulate {config.accumulate}")
    model.to(world.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    resume = ResumePoint(resume_path, _fingerprint_text({**(fingerprint or {}), "max_step": config.max_step,
                                                         "batch_size": config.batch_size, "seed": config.seed,
                                                         "samples": len(dataset)}), steps_per_epoch, config.seed)
    start_step, elapsed_before = resume.restore(model, optimizer, config.max_step)
    steplog = StepLog(log_path, config, world.main, start_step, elapsed_before)
    model.train()
    stepper = Stepper(distributed.wrap(model, world), model, optimizer, step_fn, config, world, steps_per_epoch)
    loader, step = _loader(dataset, config, world, start_step, collate_fn), start_step
    try:
        batches = iter(loader)
        while step < config.max_step:
            row = steplog.record(stepper(_next_batch(batches), step))
            step += 1
            if world.main and step % config.checkpoint_every == 0 and step < config.max_step:
                resume.save(step, model, optimizer, steplog.elapsed)
            if on_step is not None:
                on_step(step, row)
    finally:
        batches = loader = None  # shuts the loader's worker processes down, also when training failed
        steplog.close()
    world.leave()
    if not world.main:
        raise SystemExit(0)  # rank 0 returns and writes the outputs
    return steplog.finish(step, steps_per_epoch, world)


__all__ = ["CHECKPOINT_FORMAT", "TrainingError", "TrainConfig", "TrainResult", "StepFn", "ResumePoint", "StepLog",
           "Stepper", "autocast_context", "seed_everything", "sample_seed", "epoch_order", "poly_lr", "make_sgd",
           "set_poly_lr", "rng_state", "set_rng_state", "load_checkpoint", "EpochBatchSampler", "RunBatchSampler",
           "to_device", "micro_batches", "fit"]
