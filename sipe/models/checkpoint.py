"""SIPENet checkpoints: ``{"model": state_dict, "config": SIPENet kwargs, "meta": {...}}`` (DESIGN "Data formats").

Written atomically (``sipe.io.save_torch``) and read with ``torch.load(weights_only=True)``;
every failure is a one-line ``SipeError`` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sipe.errors import SipeError
from sipe.io import save_torch


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint"):
    """``torch.load(path, map_location="cpu", weights_only=True)``; one-line errors for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise SipeError(f"{path}: {what} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors, or weights_only refusing an object
        raise SipeError(f"{path}: cannot read {what} (corrupt or not a weights-only torch file: "
                        f"{type(exc).__name__}: {_first_line(exc)})") from None


def save_model(path: str | os.PathLike, model, **meta) -> None:
    """Write ``{"model": state_dict, "config": model.config, "meta": meta}`` atomically (tensors moved to CPU).

    ``meta`` must hold only what ``torch.load(weights_only=True)`` accepts (numbers, strings, lists,
    dicts, tensors).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"model": state, "config": dict(model.config), "meta": meta})


def load_sipe(path: str | os.PathLike, num_classes: int | None = None, device="cpu"):
    """Rebuild the ``SIPENet`` saved by :func:`save_model` (no ImageNet file needed) and load its weights.

    One-line ``SipeError`` for a missing or corrupt file, a class-count mismatch with ``num_classes``,
    missing/unexpected keys or a state dict that does not fit the saved architecture.
    """
    from sipe.models.sipe_net import SIPENet  # late import: sipe_net -> backbone -> this module

    path = Path(path)
    ckpt = read_torch_file(path, "SIPE checkpoint")
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("config"), dict)):
        raise SipeError(f"{path}: not a SIPE checkpoint (expected a dict with 'model' and 'config')")
    config = dict(ckpt["config"])
    saved_classes = config.get("num_classes")
    if num_classes is not None and saved_classes != num_classes:
        raise SipeError(f"{path}: checkpoint has {saved_classes} classes, expected {num_classes}")
    try:
        model = SIPENet(**{**config, "weights": None})
    except (TypeError, ValueError, SipeError) as exc:
        raise SipeError(f"{path}: bad model config in checkpoint: {_first_line(exc)}") from None
    state = ckpt["model"]
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise SipeError(f"{path}: checkpoint has {len(unexpected)} keys unknown to the {config.get('backbone')} "
                        f"SIPENet (first {unexpected[0]}) and lacks {len(missing)}: wrong architecture")
    if missing:
        raise SipeError(f"{path}: checkpoint lacks {len(missing)} keys of the {config.get('backbone')} SIPENet "
                        f"(first {missing[0]}): incomplete file or wrong architecture")
    wrong = [k for k in own if not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape]
    if wrong:
        k = wrong[0]
        got = tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__
        raise SipeError(f"{path}: {len(wrong)} tensors do not fit the {config.get('backbone')} SIPENet with "
                        f"{saved_classes} classes (first {k}: {got} vs {tuple(own[k].shape)}): wrong architecture")
    model.load_state_dict(state)
    return model.to(device)
