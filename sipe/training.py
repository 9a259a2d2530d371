"""Generic training machinery shared by the SIPE classifier, IRN and DeepLab trainings.

What it provides (SPEC C for the reference behaviour):

* :func:`select_device`, bf16 autocast and channels_last for GPUs;
* :func:`poly_lr` and :func:`make_sgd`, SGD with parameter groups whose ``lr_mult`` scales the base
  rate and the reference's momentum quirk (``momentum=1e-4``) as an explicit argument;
* :func:`fit`, the loop: poly LR set before each step (the first step uses the full rate), global
  L2 gradient clipping, a tqdm bar, per-step losses in a CSV, and **resumable checkpoints**.

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
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from sipe import distributed
from sipe.errors import SipeError
from sipe.io import atomic_path, save_torch

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class TrainingError(SipeError):
    """Training cannot go on: the loss diverged, a checkpoint is unusable, a setting is impossible."""


# ----------------------------------------------------------------------------------------------
# Device, precision, seeding
# ----------------------------------------------------------------------------------------------

def select_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1", ...) or, when ``None``/"auto", CUDA if available else CPU."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise TrainingError(f"device {requested!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {requested!r}: CUDA is not available on this machine")
    return device


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
    """lr_t = base · (1 − t/max_step)^power (SPEC C); t = 0 gives ``base``, t ≥ max_step gives 0."""
    if max_step <= 0:
        raise ValueError("max_step must be positive")
    return base * max(0.0, 1.0 - step / max_step) ** power


def make_sgd(groups: Iterable[dict], lr: float, weight_decay: float, momentum: float) -> torch.optim.SGD:
    """SGD over parameter groups ``{"params": ..., "lr_mult": m, "name": ...}`` (lr = ``lr``·m).

    ``momentum`` is explicit because the reference's PolyOptimizerSGD passes its arguments so that
    the effective momentum is 1e-4 (SPEC C, H.1.2); pass 1e-4 to reproduce it, 0.9 for textbook SGD.
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
# RNG states and checkpoints (weights_only-loadable: tensors, numbers, strings, lists, dicts)
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


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temporary sibling, then rename onto ``path`` (:func:`sipe.io.save_torch`)."""
    save_torch(path, state)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True``; one-line :class:`TrainingError` if it is unusable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise TrainingError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def library_versions() -> dict:
    """Versions recorded with every training run."""
    import PIL
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}


# ----------------------------------------------------------------------------------------------
# Data order
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


def _one_line(exc: SipeError) -> SipeError:
    """A SipeError re-raised by a DataLoader worker carries the worker's traceback; keep its last line."""
    text = str(exc)
    if "\n" not in text:
        return exc
    last = [line for line in text.splitlines() if line.strip()][-1]
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return type(exc)(last[len(prefix):] if last.startswith(prefix) else last)


# ----------------------------------------------------------------------------------------------
# The loop
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
    accumulate: int = 1                    # micro-batches per step (gradient accumulation, SPEC G.2 iter_size)
    lr_every: int = 1                      # steps between poly-lr updates (SPEC G.2: 10)


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


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset, step_fn: StepFn, config: TrainConfig,
        *, resume_path: Path, log_path: Path, fingerprint: dict | None = None, collate_fn=None,
        on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``model`` for ``config.max_step`` steps; resume from ``resume_path`` when it holds a matching checkpoint.

    ``step_fn(model, batch)`` runs the forward pass (under autocast) and returns a dict of scalar
    tensors with the total ``"loss"`` to minimise and any parts to log. Each step: set the poly lr,
    forward, backward, clip, SGD step. Every ``checkpoint_every`` steps the state goes to
    ``resume_path``; a checkpoint whose ``fingerprint`` (the settings that shape the run) differs is
    ignored with a warning. Per-step rows (step, epoch, lr, the losses, grad_norm before clipping, seconds) are appended to
    ``<log_path>.partial`` and renamed to ``log_path`` when training ends; ``resume_path`` is left
    for the caller to delete once its outputs are written. ``on_step(step, row)`` runs after each
    step (tests interrupt the run from it).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the same call trains data-parallel (:mod:`sipe.distributed`):
    NCCL on GPUs (``cuda:LOCAL_RANK``), gloo on CPU; every rank takes its equal slice of each global
    batch of ``batch_size`` (which must be a multiple of the processes × ``accumulate``), DDP averages
    the gradients, and the logged losses are the means over ranks, so the run matches one process
    with the whole batch. Every rank reads the checkpoint when resuming; rank 0 alone writes
    checkpoints, the step log and the progress bar. **Only rank 0 returns**: the other ranks' processes
    end (exit status 0) once training is done, so what the caller does after ``fit`` — writing the
    model and reports — happens once.
    """
    device = select_device(config.device)
    length = len(dataset)
    steps_per_epoch = length // config.batch_size
    if steps_per_epoch < 1:
        raise TrainingError(f"{length} training samples are fewer than one batch of {config.batch_size}")
    if config.max_step < 1:
        raise TrainingError(f"max_step must be at least 1, got {config.max_step}")
    if config.accumulate < 1 or config.batch_size % config.accumulate or config.lr_every < 1:
        raise TrainingError(f"batch_size {config.batch_size} must be a multiple of accumulate {config.accumulate} "
                            f"(>= 1), and lr_every ({config.lr_every}) at least 1")
    world = distributed.join(device)
    device = world.device
    if config.batch_size % (world.size * config.accumulate):
        raise TrainingError(f"batch_size {config.batch_size} must be a multiple of the {world.size} training "
                            f"processes times accumulate {config.accumulate}")
    fp_text = _fingerprint_text({**(fingerprint or {}), "max_step": config.max_step, "batch_size": config.batch_size,
                                 "seed": config.seed, "samples": length})
    resume_path, log_path = Path(resume_path), Path(log_path)
    live_log = log_path.with_name(log_path.name + ".partial")
    resume_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)

    start_step, elapsed_before = 0, 0.0
    if resume_path.exists():
        try:
            state = load_checkpoint(resume_path)
        except TrainingError as exc:
            raise TrainingError(f"{exc}; delete it to start afresh") from None
        if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fp_text:
            log.warning("%s: checkpoint from other settings; starting afresh", resume_path)
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"])
            start_step = int(state["step"])
            elapsed_before = float(state.get("elapsed_s", 0.0))
            log.info("%s: resuming at step %d of %d", resume_path, start_step, config.max_step)
    if world.main and start_step == 0:  # rank 0 alone keeps the step log
        live_log.unlink(missing_ok=True)
    elif world.main:
        if not live_log.exists() and log_path.exists():  # killed after the log was renamed into place
            os.replace(log_path, live_log)
        _truncate_log(live_log, start_step)

    seeded = _Seeded(dataset)
    pin = device.type == "cuda"
    log_every = config.log_every or max(1, config.max_step // 20)
    model.train()
    net = distributed.wrap(model, world)  # what step_fn runs: DDP's forward registers the gradient all-reduce

    def checkpoint(step: int, elapsed: float) -> None:
        epoch = step // steps_per_epoch
        save_checkpoint(resume_path, {
            "format": CHECKPOINT_FORMAT, "fingerprint": fp_text, "step": step,
            "data": {"epoch": epoch, "batch_in_epoch": step - epoch * steps_per_epoch, "seed": config.seed},
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(),
            "elapsed_s": elapsed})

    columns: list[str] | None = None
    handle = None
    if world.main and live_log.exists():
        with live_log.open(newline="") as fh:
            columns = next(csv.reader(fh), None)
    step = start_step
    bar = tqdm(total=config.max_step, initial=start_step, desc=config.desc, unit="step", file=sys.stderr,
               mininterval=1.0, dynamic_ncols=True, disable=not world.main)
    session_start = time.perf_counter()
    last_row: dict = {}
    batches = None
    try:
        if world.main:
            handle = live_log.open("a", newline="")
            writer = csv.writer(handle)
        loader = DataLoader(seeded, batch_sampler=RunBatchSampler(length, config.batch_size, config.seed, start_step,
                                                                  config.max_step, rank=world.rank,
                                                                  world_size=world.size),
                            num_workers=config.loader_workers, collate_fn=collate_fn, pin_memory=pin,
                            persistent_workers=False, generator=torch.Generator().manual_seed(config.seed))
        batches = iter(loader)
        while step < config.max_step:
            epoch = step // steps_per_epoch
            try:
                batch = next(batches)
            except SipeError as exc:
                raise _one_line(exc) from None
            lr = set_poly_lr(optimizer, step - step % config.lr_every, config.max_step, config.poly_power)
            batch = to_device(batch, device, config.channels_last)
            optimizer.zero_grad(set_to_none=True)
            parts = []
            for index, micro in enumerate(micro_batches(batch, config.accumulate)):
                # Under DDP the gradients are all-reduced once per step, with the last micro-batch's backward.
                with distributed.no_sync(net) if index < config.accumulate - 1 else contextlib.nullcontext():
                    with autocast_context(device, config.precision):
                        losses = step_fn(net, micro)
                    loss = losses["loss"]
                    if not torch.isfinite(loss.detach()).item():
                        raise TrainingError(f"training diverged: loss is {loss.item()} at step {step + 1}")
                    (loss / config.accumulate).backward()
                parts.append({k: v.detach().float() for k, v in losses.items()})
            losses = distributed.average({k: torch.stack([p[k] for p in parts]).mean() for k in parts[0]}, world)
            # Global L2 norm over all parameters (logged before clipping); no clipping when grad_clip is off.
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
            optimizer.step()
            step += 1

            now = time.perf_counter() - session_start
            row = {"step": step, "epoch": epoch, "lr": lr}
            row.update({k: float(v.detach().float().item()) for k, v in losses.items()})
            row["grad_norm"] = float(grad_norm)
            row["time_s"] = round(elapsed_before + now, 4)
            if handle is not None:
                if columns is None:
                    columns = list(row)
                    writer.writerow(columns)
                writer.writerow([row.get(c, "") for c in columns])
                handle.flush()
            last_row = row

            done = step - start_step
            rate = done * config.batch_size / now if now > 0 else 0.0
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{rate:.1f}", refresh=False)
            if world.main and (step % log_every == 0 or step == config.max_step):
                log.info("%s step %d/%d epoch %d lr %.4g %s %.1f img/s", config.desc, step, config.max_step, epoch,
                         lr, " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("loss")), rate)
            if world.main and step % config.checkpoint_every == 0 and step < config.max_step:
                checkpoint(step, elapsed_before + now)
            if on_step is not None:
                on_step(step, row)
    finally:
        batches = loader = None  # shuts the loader's worker processes down, also when training failed
        bar.close()
        if handle is not None:
            handle.close()
    session_s = time.perf_counter() - session_start
    world.leave()
    if not world.main:
        raise SystemExit(0)  # rank 0 returns and writes the outputs
    os.replace(live_log, log_path)

    import pandas as pd

    table = pd.read_csv(log_path)
    tail = table[table["step"] > max(0, config.max_step - steps_per_epoch)]
    final = {c: float(tail[c].mean()) for c in table.columns if c.startswith("loss")}
    done = step - start_step
    return TrainResult(steps=step, resumed_from=start_step, wall_s=elapsed_before + session_s, session_steps=done,
                       session_s=session_s, images_per_s=done * config.batch_size / session_s if session_s > 0 else 0.0,
                       steps_per_s=done / session_s if session_s > 0 else 0.0, final=final, last=last_row,
                       device=str(device), columns=list(table.columns), processes=world.size)


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------

def plot_losses(log_path: Path, png_path: Path, title: str = "training loss") -> None:
    """Loss curves (raw and a moving average per ``loss*`` column, log scale) and the lr, from a steps CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(log_path)
    loss_cols = [c for c in table.columns if c.startswith("loss")]
    window = max(1, min(25, len(table) // 10))
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, col in enumerate(loss_cols):
        colour = f"C{i}"
        ax.plot(table["step"], table[col], color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(table["step"], table[col].rolling(window, min_periods=1).mean(), color=colour, label=col)
    if loss_cols and (table[loss_cols] > 0).all().all():
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax.grid(True, alpha=0.3)
    ax_lr.plot(table["step"], table["lr"], color="k")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("lr")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def result_summary(result: TrainResult, config: TrainConfig) -> dict:
    """A JSON-ready record of a run: settings, losses, speed and library versions."""
    return {"steps": result.steps, "resumed_from": result.resumed_from, "wall_s": round(result.wall_s, 3),
            "session_s": round(result.session_s, 3), "images_per_s": round(result.images_per_s, 3),
            "steps_per_s": round(result.steps_per_s, 4), "final_losses": result.final,
            "last_step": result.last, "device": result.device, "processes": result.processes,
            "torch_threads": torch.get_num_threads(),
            "config": asdict(config), "versions": library_versions()}


__all__ = ["TrainingError", "TrainConfig", "TrainResult", "select_device", "autocast_context", "seed_everything",
           "sample_seed", "epoch_order", "poly_lr", "make_sgd", "set_poly_lr", "rng_state", "set_rng_state",
           "save_checkpoint", "load_checkpoint", "library_versions", "EpochBatchSampler", "RunBatchSampler",
           "to_device", "micro_batches", "fit",
           "plot_losses", "result_summary"]
