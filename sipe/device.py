"""The one device selector of the pipeline's torch stages (training and inference), a model's device,
and the CPU threads of an inference stage."""

from __future__ import annotations

import contextlib

import torch

from sipe.errors import ConfigError


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1", ...) or, when ``None``/"auto", CUDA if available else CPU.

    A device torch does not know, or CUDA on a machine without it, is a one-line :class:`ConfigError`.
    """
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ConfigError(f"device {requested!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r}: CUDA is not available on this machine")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s parameters (CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@contextlib.contextmanager
def torch_threads(workers: int):
    """Inside the block torch uses ``workers`` CPU threads (at least 1); the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(workers)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


__all__ = ["model_device", "select_device", "torch_threads"]
