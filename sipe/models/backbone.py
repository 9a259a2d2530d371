"""torchvision ResNets arranged as the SIPE backbone (docs/method.md B.1).

- Output stride 16: layer4's first block keeps stride 1 and uses NO dilation, so layer3 and
  layer4 share the s16 grid of ceil(H/16) × ceil(W/16).
- Frozen BN statistics: the modules stay ``nn.BatchNorm2d`` but are forced into eval mode by
  :func:`freeze_bn` and by the model's ``train()`` override; their affine γ/β stay trainable.
- Frozen stem: conv1/bn1 get ``requires_grad=False``. The gradient cut after layer2 belongs to
  the network using the backbone (``SIPENet`` detaches the stage-2 output).
- Weights through torchvision's weights API; nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from sipe.errors import SipeError
from sipe.io import read_torch_file
from sipe.models.checkpoint import state_mismatch

# name -> (block, blocks per layer, torchvision weights enum name)
_ARCHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), "ResNet18_Weights"),
    "resnet34": (BasicBlock, (3, 4, 6, 3), "ResNet34_Weights"),
    "resnet50": (Bottleneck, (3, 4, 6, 3), "ResNet50_Weights"),
    "resnet101": (Bottleneck, (3, 4, 23, 3), "ResNet101_Weights"),
}
BACKBONES = tuple(_ARCHS)
STAGE_NAMES = ("stage0", "stage1", "stage2", "stage3", "stage4")


def freeze_bn(module: nn.Module) -> nn.Module:
    """Put every BatchNorm of ``module`` into eval mode: running statistics are used and never updated (docs/method.md B.1)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return module


class FrozenBNResNet(ResNet):
    """A torchvision ``ResNet`` whose ``train()`` never takes BatchNorm out of eval mode (docs/method.md B.1 "FixedBatchNorm")."""

    def train(self, mode: bool = True):
        super().train(mode)
        return freeze_bn(self)


def stage_channels(name: str) -> tuple[int, int, int, int, int]:
    """Output channels of stage0..stage4 for a backbone name (64, then layer1..layer4)."""
    block = _arch(name)[0]
    return (64,) + tuple(64 * 2**i * block.expansion for i in range(4))


def backbone_stages(resnet: ResNet) -> list[nn.Sequential]:
    """The five backbone stages (docs/method.md B.1): stage0 = conv1+bn1+relu+maxpool, stage1..4 = layer1..4.

    The returned ``nn.Sequential`` objects share the ResNet's modules; do not register them on
    another module (that would alias every key in its state dict, as the authors' checkpoint does).
    """
    return [
        nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool),
        nn.Sequential(resnet.layer1),
        nn.Sequential(resnet.layer2),
        nn.Sequential(resnet.layer3),
        nn.Sequential(resnet.layer4),
    ]


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision's IMAGENET1K_V1 file for ``name`` belongs: ``<torch hub dir>/checkpoints/<file>``."""
    url = getattr(torchvision.models, _arch(name)[2]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def weights_file(name: str, weights: str | os.PathLike) -> Path:
    """The file that ``weights`` (``"imagenet"`` or a path) names for backbone ``name``; a one-line
    ``SipeError`` when it is not there (also checked before a run: :mod:`sipe.preflight`)."""
    if str(weights) == "imagenet":
        path = imagenet_weights_file(name)
        if not path.is_file():
            raise SipeError(f"ImageNet weights for {name} not found (nothing is downloaded): "
                            f"place {path.name} in {path.parent}/")
        return path
    path = Path(weights)
    if not path.is_file():
        raise SipeError(f"{path}: {name} weights file not found")
    return path


def build_resnet(name: str, weights: str | os.PathLike | None) -> FrozenBNResNet:
    """A torchvision ResNet (18/34/50/101) with output stride 16, frozen BN statistics and a frozen stem (docs/method.md B.1).

    ``weights``: ``None`` = random init (torchvision's), ``"imagenet"`` = torchvision IMAGENET1K_V1 from
    the torch hub cache (never downloaded; a one-line ``SipeError`` names the file to place and where),
    or a path to a torchvision-format state dict (the ``fc.*`` keys may be absent).
    """
    block, layers, _ = _arch(name)
    model = FrozenBNResNet(block, list(layers))
    _stride_one_layer4(model)
    if weights is not None:
        _load_torchvision_state(model, weights_file(name, weights), name)
    for p in (*model.conv1.parameters(), *model.bn1.parameters()):
        p.requires_grad_(False)
    model.train()
    return model


def _arch(name: str):
    if name not in _ARCHS:
        raise SipeError(f"unknown backbone {name!r}; choose one of {', '.join(_ARCHS)}")
    return _ARCHS[name]


def _stride_one_layer4(model: ResNet) -> None:
    """Turn layer4's stride 2 into stride 1 without dilation (docs/method.md B.1: strides 2,2,2,1, dilations 1,1,1,1)."""
    first = model.layer4[0]
    strided = first.conv1 if isinstance(first, BasicBlock) else first.conv2  # the 3×3 conv carries the stride
    strided.stride = (1, 1)
    first.downsample[0].stride = (1, 1)
    first.stride = 1


def _load_torchvision_state(model: ResNet, path: Path, name: str) -> None:
    state = read_torch_file(path, f"{name} weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SipeError(f"{path}: not a torchvision state dict (expected a flat dict of tensors)")
    problem = state_mismatch(model.state_dict(), state, optional=("fc.",))
    if problem:
        raise SipeError(f"{path}: does not match torchvision {name} ({problem})")
    model.load_state_dict(state, strict=False)
