"""The one device selector of the pipeline's torch stages (training and inference)."""

from __future__ import annotations

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


__all__ = ["select_device"]
