"""DeepLabV2: dilated ResNet at output stride 8, ASPP v2 and multi-scale inputs (docs/method.md G.1, G.2).

The final, fully supervised stage of the pipeline trains this network on the pseudo labels.

- **Backbone**: a torchvision ResNet (18/34/50/101, built by :func:`sipe.models.backbone.build_resnet`)
  with layer3 at dilation 2 and layer4 at dilation 4 in *every* block, stride 1 in both, so the
  output stride is 8 (docs/method.md G.1, where they are deeplab-pytorch's layer4/layer5). The stem's max-pool uses ``ceil_mode=True``.
- **Deliberate deviation (stride placement)**: the reference ResNet-101 is Caffe/MSRA style, with
  the stride of a bottleneck on its first 1×1 conv; torchvision puts it on the 3×3 conv. We use
  torchvision models, so ``style="torchvision"`` (the default) keeps torchvision's placement.
  ``style="caffe"`` moves layer2's stride back onto the 1×1 conv and switches the input to the
  reference's BGR-minus-mean encoding: use it with weights converted from deeplab-pytorch's
  Caffe-trained COCO initialisation (:func:`sipe.models.convert.convert_deeplab_init`, docs/reproducing.md).
- **ASPP v2**: four parallel 3×3 convs, backbone features → classes, dilation = padding = 6, 12,
  18, 24, with bias, weights N(0, 0.01), bias 0; their outputs are summed (no BN, no ReLU).
- **MSC**: the image at 1.0 and at each of ``scales`` (bilinear, ``align_corners=False``); the
  forward pass returns the logits of every scale plus their pixelwise max after bilinear resizing
  to the 1.0 logit size. Training uses all of them; inference uses the last one (the max).
- **Frozen BN** (docs/method.md G.2 ``freeze_bn``): every BatchNorm stays in eval mode (running statistics,
  never updated) and its affine parameters get no gradient. Conv weights of the whole backbone,
  stem included, are trained.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from sipe.errors import SipeError
from sipe.models.backbone import BACKBONES, build_resnet, freeze_bn, stage_channels
from sipe.models.checkpoint import SavedModel, load_model

ASPP_RATES = (6, 12, 18, 24)      # docs/method.md G.1
MSC_SCALES = (0.5, 0.75)          # docs/method.md G.1, in addition to 1.0
STYLES = ("torchvision", "caffe")  # weights' input encoding and stride placement (module docstring)
DILATIONS = {"layer3": 2, "layer4": 4}  # docs/method.md G.1: output stride 8


def dilate_layer(layer: nn.Sequential, dilation: int) -> None:
    """Give every 3×3 conv of a ResNet layer ``dilation`` (= padding) and remove the layer's stride."""
    for block in layer:
        convs = (block.conv1, block.conv2) if isinstance(block, BasicBlock) else (block.conv1, block.conv2, block.conv3)
        for conv in convs:
            conv.stride = (1, 1)
            if conv.kernel_size == (3, 3):
                conv.dilation = conv.padding = (dilation, dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


def caffe_stride(layer: nn.Sequential) -> None:
    """Move the stride of a bottleneck layer's first block from the 3×3 conv to the 1×1 "reduce" conv (docs/method.md G.1)."""
    first = layer[0]
    if isinstance(first, Bottleneck) and first.conv2.stride != (1, 1):
        first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)


class ASPP(nn.Module):
    """ASPP v2 (docs/method.md G.1): the sum of parallel dilated 3×3 convs, one per rate, straight to class logits."""

    def __init__(self, in_channels: int, num_classes: int, rates=ASPP_RATES):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([branch(x) for branch in self.branches]).sum(dim=0)


class DeepLabV2(SavedModel):
    """DeepLabV2-MSC (docs/method.md G.1).

    ``num_classes`` counts background (VOC 21). ``weights``: ``None`` (random), ``"imagenet"``
    (torchvision's file in the torch hub cache, never downloaded) or the path of a torchvision-format
    ResNet state dict (the pretrain stage's ``backbone.pth``, or a converted DeepLab initialisation).
    ``forward(x [N,3,H,W])`` returns ``[logits@1.0, logits@scales[0], …, max-fused]``, each
    [N, num_classes, h, w] at the size of its own input / 8 (the fused one at the 1.0 size).
    """

    LABEL, MARKER = "DeepLab", "style"

    def __init__(self, num_classes: int, backbone: str = "resnet101", weights: str | os.PathLike | None = None,
                 style: str = "torchvision", scales=MSC_SCALES):
        super().__init__()
        if style not in STYLES:
            raise SipeError(f"unknown DeepLab style {style!r}; choose one of {', '.join(STYLES)}")
        if num_classes < 2:
            raise SipeError(f"DeepLab needs at least 2 classes (background included), got {num_classes}")
        self.config = {"num_classes": int(num_classes), "backbone": backbone, "style": style,
                       "scales": [float(s) for s in scales]}
        self.scales = tuple(float(s) for s in scales)
        resnet = build_resnet(backbone, None if weights in (None, "none") else weights)
        resnet.maxpool.ceil_mode = True
        if style == "caffe":
            caffe_stride(resnet.layer2)
        for name, dilation in DILATIONS.items():
            dilate_layer(getattr(resnet, name), dilation)
        del resnet.fc
        self.backbone = resnet
        self.aspp = ASPP(stage_channels(backbone)[-1], num_classes)
        for module in self.backbone.modules():
            trainable = isinstance(module, nn.Conv2d)
            for p in module.parameters(recurse=False):
                p.requires_grad_(trainable)
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        return freeze_bn(self)

    def single_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of one input at output stride 8."""
        r = self.backbone
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return self.aspp(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [self.single_scale(x)]
        for scale in self.scales:
            outputs.append(self.single_scale(F.interpolate(x, scale_factor=scale, mode="bilinear",
                                                           align_corners=False)))
        size = outputs[0].shape[-2:]
        resized = [outputs[0]] + [F.interpolate(o, size=size, mode="bilinear", align_corners=False)
                                  for o in outputs[1:]]
        return outputs + [torch.stack(resized).amax(dim=0)]

    def parameter_groups(self) -> list[dict]:
        """docs/method.md G.2 groups for :func:`sipe.training.make_sgd`: backbone conv weights (lr 1×), ASPP weights
        (10×) and ASPP biases (20×, no weight decay). BatchNorm parameters are in no group."""
        return [
            {"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr_mult": 1.0, "name": "backbone"},
            {"params": [b.weight for b in self.aspp.branches], "lr_mult": 10.0, "name": "aspp_weight"},
            {"params": [b.bias for b in self.aspp.branches], "lr_mult": 20.0, "name": "aspp_bias",
             "weight_decay": 0.0},
        ]


def load_deeplab(path: str | os.PathLike, num_classes: int | None = None, device="cpu") -> DeepLabV2:
    """The DeepLabV2 saved in ``path`` (:func:`sipe.models.checkpoint.load_model`), checked for ``num_classes``."""
    return load_model(path, DeepLabV2, device, num_classes=num_classes)


__all__ = ["ASPP_RATES", "MSC_SCALES", "STYLES", "BACKBONES", "DeepLabV2", "ASPP", "dilate_layer", "caffe_stride",
           "load_deeplab"]
