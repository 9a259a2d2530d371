"""The model contract: one file format and one save/load path for SIPENet, IRN and DeepLabV2.

A model file is ``{"model": state_dict, "config": model.config, "meta": {...}}`` (docs/architecture.md,
"Data formats"), written atomically (:func:`sipe.io.save_torch`) and read with
``torch.load(weights_only=True)``. A network takes part by deriving from :class:`SavedModel`:
its ``config`` holds its constructor settings, so :func:`load_model` rebuilds it without any weights
file, checks the config against what the caller expects and the saved tensors against the network's
keys and shapes, and fails with one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from sipe.errors import SipeError, one_line
from sipe.io import read_torch_file, save_torch

# What a caller may require of a checkpoint's config, and the message when it differs.
_EXPECTED = {
    "num_classes": "checkpoint has {got} classes, expected {want}",
    "backbone": "{label} checkpoint is for backbone {got}, but sipe.backbone is {want} "
                "(retrain {label} or set sipe.backbone)",
}


class SavedModel(nn.Module):
    """Base of every network saved by the pipeline (the ``segmentation_models.pytorch`` pattern).

    Subclasses set ``config`` (JSON-like constructor settings, a ``weights`` entry included or not),
    ``LABEL`` (the kind of file in messages) and ``MARKER`` (a config key no other network's config has).
    """

    LABEL: ClassVar[str] = "model"
    MARKER: ClassVar[str] = ""
    config: dict

    @classmethod
    def from_config(cls, config: dict) -> SavedModel:
        """The network of a saved ``config``, randomly initialised (never reads a weights file)."""
        return cls(**{**config, "weights": None})

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu", **expected) -> SavedModel:
        """:func:`load_model` for this class."""
        return load_model(path, cls, device, **expected)

    def save(self, path: str | os.PathLike, **meta) -> None:
        """:func:`save_model` of this network."""
        save_model(path, self, **meta)


def save_model(path: str | os.PathLike, model: nn.Module, **meta) -> None:
    """Write ``{"model": state_dict, "config": model.config, "meta": meta}`` atomically (tensors moved to CPU).

    ``meta`` must hold only what ``torch.load(weights_only=True)`` accepts (numbers, strings, lists,
    dicts, tensors).
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"model": state, "config": dict(model.config), "meta": meta})


def load_model(path: str | os.PathLike, cls: type[SavedModel], device="cpu", **expected) -> SavedModel:
    """The ``cls`` network saved in ``path``, with its weights, on ``device``, in eval mode.

    ``expected`` config values (``num_classes=``, ``backbone=``; ``None`` = any) must match. One-line
    :class:`SipeError` for a missing or corrupt file, another network's file, a mismatch with
    ``expected``, a config ``cls`` refuses, or tensors that do not fit the rebuilt network.
    """
    path = Path(path)
    return model_from_checkpoint(path, read_torch_file(path, f"{cls.LABEL} checkpoint"), cls, device, **expected)


def model_from_checkpoint(path: Path, ckpt, cls: type[SavedModel], device="cpu", **expected) -> SavedModel:
    """:func:`load_model` of the already read contents ``ckpt`` of the checkpoint file ``path``."""
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not (isinstance(config, dict) and isinstance(ckpt.get("model"), dict) and cls.MARKER in config):
        article = "an" if cls.LABEL[0] in "AEIOU" else "a"
        raise SipeError(f"{path}: not {article} {cls.LABEL} checkpoint (expected 'model' and {article} "
                        f"{cls.LABEL} 'config'; train it with the pipeline or convert it)")
    for key, want in expected.items():
        if want is not None and config.get(key) != want:
            message = _EXPECTED[key].format(got=config.get(key), want=want, label=cls.LABEL)
            raise SipeError(f"{path}: {message}")
    try:
        model = cls.from_config(config)
    except (TypeError, ValueError, KeyError, SipeError) as exc:
        raise SipeError(f"{path}: bad model config in the {cls.LABEL} checkpoint: {one_line(exc, 160)}") from None
    problem = state_mismatch(model.state_dict(), ckpt["model"])
    if problem:
        raise SipeError(f"{path}: weights do not fit a {config.get('backbone')} {cls.__name__} ({problem}): "
                        f"wrong architecture or incomplete file")
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def state_mismatch(own: dict, state: dict, optional: tuple[str, ...] = ()) -> str:
    """How the tensors ``state`` fail to fit the state dict ``own`` ("" when they fit): counts of the
    missing, unexpected and mis-shaped keys and the first offender. Keys of ``own`` starting with one
    of ``optional`` may be absent."""
    missing = [k for k in own if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
    if not (missing or unexpected or wrong):
        return ""
    if missing:
        first = f"the file lacks {len(missing)} keys, first {missing[0]}"
    elif unexpected:
        first = f"first unexpected key {unexpected[0]}"
    else:
        got = state[wrong[0]]
        got = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        first = f"first {wrong[0]}: {got} vs {tuple(own[wrong[0]].shape)}"
    return f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped keys; {first}"


__all__ = ["SavedModel", "load_model", "model_from_checkpoint", "save_model", "state_mismatch"]
