"""Data-parallel training across processes (torch DDP), driven by the ``torchrun`` environment.

``torchrun --nproc_per_node=N -m sipe train-sipe ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; a plain ``python -m sipe ...`` has none of them
and is the world of one process. :func:`sipe.training.fit` uses this module so that every trainer
built on it runs data-parallel without code of its own:

* the process group is NCCL on GPUs (one GPU per process, ``cuda:LOCAL_RANK``) and gloo on CPU;
* the global batch stays ``batch_size``: each rank takes its contiguous slice of every global batch
  (:func:`rank_slice`), so N ranks × ``batch_size``/N samples see exactly the samples, with exactly
  the augmentation, of one process with ``batch_size``;
* gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel`. The losses of
  this project are per-sample means over equally sized samples, so the mean of the ranks' means over
  equal slices is the global mean and the averaged gradient is the single-process gradient (up to
  the order of the floating-point reductions);
* rank 0 alone writes checkpoints, logs and outputs.

BatchNorm layers in training mode normalise with per-rank batch statistics (as without
``SyncBatchNorm`` anywhere); the SIPE, IRN and DeepLab networks freeze BatchNorm (docs/method.md B.1, F.2, G.2), so only
the ``pretrain`` stand-in stage is affected.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def env_rank() -> int:
    """This process's rank in the torchrun job (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    """The number of processes of the torchrun job (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class World:
    """The process group a training runs in: ``rank`` of ``size`` processes on ``device``."""

    rank: int
    size: int
    device: torch.device
    owns_group: bool  # the process group was created by :func:`join` (and is destroyed by :meth:`leave`)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def leave(self) -> None:
        """Wait for every rank, then destroy the process group if :func:`join` created it."""
        if self.size > 1 and self.owns_group:
            dist.barrier()
            dist.destroy_process_group()


def join(device: torch.device) -> World:
    """Join the torchrun job's process group (created here when not yet initialised).

    ``device`` is what the caller asked for; under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``
    (NCCL), a CPU device stays CPU (gloo). Outside torchrun this returns a world of one process.
    """
    size = env_world_size()
    if size == 1:
        return World(rank=0, size=1, device=device, owns_group=False)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), device=device, owns_group=owns)


def rank_slice(batch: list, rank: int, size: int) -> list:
    """Rank ``rank``'s contiguous share of a global batch whose length is a multiple of ``size``."""
    share = len(batch) // size
    return batch[rank * share:(rank + 1) * share]


class DataParallel(DistributedDataParallel):
    """DDP that also answers for the wrapped network's own attributes (``model.scales`` in a step function).

    Step functions must run the network through ``model(...)``: DDP's forward prepares the gradient
    all-reduce of the following backward.
    """

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """``model`` in :class:`DataParallel` when the world has several processes, else itself.

    ``find_unused_parameters`` because a step may leave parameters out of the loss (the ``nogsc``
    variant logs, but does not train on, the GSC branch; without it DDP waits for their gradients).
    """
    if world.size == 1:
        return model
    return DataParallel(model, device_ids=[world.device] if world.device.type == "cuda" else None,
                        find_unused_parameters=True)


def no_sync(model: torch.nn.Module):
    """Skip the gradient all-reduce of this backward (all micro-batches of a step but the last)."""
    return model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()


def average(values: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """The mean over ranks of each (detached, scalar) value; the values themselves in a world of one."""
    if world.size == 1:
        return values
    names = list(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in names])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    stacked /= world.size
    return {k: stacked[i] for i, k in enumerate(names)}


__all__ = ["World", "DataParallel", "env_rank", "env_world_size", "join", "rank_slice", "wrap", "no_sync",
           "average"]
