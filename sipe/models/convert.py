"""Import the SIPE authors' checkpoint (``{'net': state_dict}``, SPEC C) as a resnet50 SIPENet checkpoint.

The authors' state dict names most tensors several times (the module is registered under
several parents). Canonical names and the aliases of the same tensor:

=========================  ==============================================  ==========================
canonical (authors)        aliases (authors)                               SIPENet key
=========================  ==============================================  ==========================
resnet50.conv1.*           stage0.0.*, backbone.0.0.*                      backbone.conv1.*
resnet50.bn1.*             stage0.1.*, backbone.0.1.*                      backbone.bn1.*
resnet50.layer{i}.*        stage{i}.0.*, backbone.{i}.0.*  (i = 1..4)      backbone.layer{i}.*
classifier.*               newly_added.0.*                                 classifier.*
side{j}.*                  newly_added.{j}.*  (j = 1..4)                   side{j}.*
=========================  ==============================================  ==========================

Every SIPENet tensor is filled exactly once, from its canonical key; each alias present must hold
the same values. Unknown keys, missing keys, shape mismatches and disagreeing aliases are refused
with a one-line ``SipeError`` naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from sipe.errors import SipeError
from sipe.models.checkpoint import read_torch_file, save_model
from sipe.models.sipe_net import SIPENet

_RULES = (  # (pattern, SIPENet key template, canonical?)
    (r"resnet50\.(conv1|bn1)\.(.+)", r"backbone.\1.\2", True),
    (r"resnet50\.(layer[1-4]\..+)", r"backbone.\1", True),
    (r"(classifier|side[1-4])\.([^.]+)", r"\1.\2", True),
    (r"(?:stage0|backbone\.0)\.0\.(.+)", r"backbone.conv1.\1", False),
    (r"(?:stage0|backbone\.0)\.1\.(.+)", r"backbone.bn1.\1", False),
    (r"(?:stage|backbone\.)([1-4])\.0\.(.+)", r"backbone.layer\1.\2", False),
    (r"newly_added\.0\.(.+)", r"classifier.\1", False),
    (r"newly_added\.([1-4])\.(.+)", r"side\1.\2", False),
)


def _map_key(key: str) -> tuple[str, bool] | None:
    """SIPENet key and whether ``key`` is canonical, or None for a key the authors' model does not have."""
    for pattern, template, canonical in _RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(template), canonical
    return None


def convert_reference_checkpoint(src: str | os.PathLike, out: str | os.PathLike,
                                 num_classes: int | None = None) -> SIPENet:
    """Convert the authors' ``{'net': state_dict}`` file ``src`` into our checkpoint ``out`` (resnet50 SIPENet).

    ``num_classes`` (foreground C) is inferred from ``classifier.weight``; if given, it must agree.
    A bare state dict and a DataParallel ``module.`` prefix are accepted too. Returns the loaded model.
    """
    src, out = Path(src), Path(out)
    raw = read_torch_file(src, "SIPE reference checkpoint")
    state = raw.get("net", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SipeError(f"{src}: not an authors' SIPE checkpoint (expected {{'net': state_dict}})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if "classifier.weight" not in state:
        raise SipeError(f"{src}: no classifier.weight, cannot infer the number of classes")
    found = state["classifier.weight"].shape[0]
    if num_classes is not None and found != num_classes:
        raise SipeError(f"{src}: classifier has {found} classes, expected {num_classes}")

    model = SIPENet(found, backbone="resnet50", weights=None)
    target = model.state_dict()
    filled: dict[str, str] = {}
    aliases: list[tuple[str, str]] = []
    for key, tensor in state.items():
        mapped = _map_key(key)
        if mapped is None or mapped[0] not in target:
            raise SipeError(f"{src}: unknown key {key} (not part of the authors' resnet50 SIPE network)")
        name, canonical = mapped
        if tensor.shape != target[name].shape:
            raise SipeError(f"{src}: {key} has shape {tuple(tensor.shape)}, SIPENet {name} needs "
                            f"{tuple(target[name].shape)}")
        if canonical:
            filled[name] = key  # each SIPENet key has exactly one canonical pattern, so no double fill
        else:
            aliases.append((key, name))
    missing = [name for name in target if name not in filled]
    if missing:
        raise SipeError(f"{src}: {len(missing)} SIPENet tensors have no source key (first {missing[0]})")
    for key, name in aliases:
        if not torch.equal(state[key], state[filled[name]]):
            raise SipeError(f"{src}: alias {key} differs from {filled[name]}")

    model.load_state_dict({name: state[key] for name, key in filled.items()})
    save_model(out, model, converted_from=str(src), source_format="sipe-authors")
    return model
