"""Converters of other projects' weights into the pipeline's files.

* :func:`convert_reference_checkpoint`: the SIPE authors' checkpoint (``{'net': state_dict}``, docs/method.md C)
  → a resnet50 SIPENet model file;
* :func:`convert_deeplab_init`: deeplab-pytorch's Caffe-converted COCO initialisation (docs/method.md G.2 "Init")
  → a torchvision-format ResNet-101 state dict for ``deeplab.weights``.

The authors' SIPE state dict names most tensors several times (the module is registered under
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
from sipe.io import read_torch_file, save_torch
from sipe.models.backbone import build_resnet
from sipe.models.checkpoint import save_model
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


# ----------------------------------------------------------------------------------------------
# deeplab-pytorch's Caffe-converted initialisation (docs/method.md G.2 "Init")
# ----------------------------------------------------------------------------------------------

_BRANCH = {"reduce": "conv1", "conv3x3": "conv2", "increase": "conv3"}


def deeplab_init_key(key: str) -> str | None:
    """The torchvision ResNet name of a deeplab-pytorch ResNet-101 key (``None`` for keys with no counterpart).

    deeplab-pytorch names the stem ``layer1.conv1.{conv,bn}`` and the residual layers ``layer2``–``layer5``
    with blocks ``block1…`` of branches ``reduce``/``conv3x3``/``increase``/``shortcut``, each a
    ``conv`` + ``bn`` pair; torchvision's are ``conv1``/``bn1`` and ``layer1``–``layer4``, blocks
    ``0…``, ``conv1..3``/``bn1..3`` and ``downsample.0``/``downsample.1``. A leading ``base.`` (the
    MSC wrapper) is dropped; ASPP and classifier keys have no counterpart.
    """
    key = key.removeprefix("base.")
    stem = re.fullmatch(r"layer1\.conv1\.(conv|bn)\.(\w+)", key)
    if stem:
        return f"{stem[1]}1.{stem[2]}"
    block = re.fullmatch(r"layer([2-5])\.block(\d+)\.(reduce|conv3x3|increase|shortcut)\.(conv|bn)\.(\w+)", key)
    if not block:
        return None
    layer, index, branch, kind, tensor = int(block[1]) - 1, int(block[2]) - 1, block[3], block[4], block[5]
    if branch == "shortcut":
        return f"layer{layer}.{index}.downsample.{0 if kind == 'conv' else 1}.{tensor}"
    name = _BRANCH[branch]
    return f"layer{layer}.{index}.{name if kind == 'conv' else name.replace('conv', 'bn')}.{tensor}"


def convert_deeplab_init(src: str | os.PathLike, out: str | os.PathLike) -> int:
    """Convert deeplab-pytorch's ``deeplabv1_resnet101-coco.pth`` (or any of its ResNet-101 state dicts)
    into a torchvision-format ResNet-101 state dict for ``deeplab.weights``; return the tensors written.

    The file is checked against torchvision's ResNet-101: every backbone tensor must be present with
    the right shape. Train with ``deeplab.style: caffe`` (BGR minus mean input, stride on the 1×1
    conv), the encoding these weights were trained with.
    """
    state = read_torch_file(src, "DeepLab initialisation")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SipeError(f"{src}: not a state dict of tensors")
    converted = {}
    for key, value in state.items():
        name = deeplab_init_key(key)
        if name is not None and not name.endswith("num_batches_tracked"):
            converted[name] = value
    own = {k: v for k, v in build_resnet("resnet101", None).state_dict().items() if not k.startswith("fc.")}
    counters = {k for k in own if k.endswith("num_batches_tracked")}  # BN step counters: not weights
    missing = [k for k in own if k not in converted and k not in counters]
    wrong = [k for k in own if k in converted and converted[k].shape != own[k].shape]
    if missing or wrong:
        what = (f"{len(missing)} ResNet-101 tensors missing (first {missing[0]})" if missing
                else f"{len(wrong)} shape mismatches (first {wrong[0]})")
        raise SipeError(f"{src}: not a deeplab-pytorch ResNet-101: {what}")
    save_torch(out, {k: own[k] if k in counters else converted[k].float().contiguous() for k in own})
    return len(own) - len(counters)



__all__ = ["convert_reference_checkpoint", "convert_deeplab_init", "deeplab_init_key"]
