"""IRN, the inter-pixel relation network of Ahn et al. (CVPR 2019), as SIPE uses it (docs/method.md F.2).

A frozen ResNet (the SIPE backbone: stride 16, frozen BN, every stage output detached and never
trained) feeds two heads at stride 4:

* the **edge branch**: each of the five stages → 1×1 conv to 32 channels (no bias), GroupNorm(4),
  bilinear upsampling to stride 4, ReLU; the 160 concatenated channels → 1×1 conv (bias) → one
  boundary logit per stride-4 cell;
* the **displacement branch**: dp1–dp5 on the stages (64/128/256/256/256 channels, GroupNorm 8/16),
  dp6 fuses the stride-8 features and upsamples them, dp7 fuses everything at stride 4 into a
  2-channel displacement field (dy, dx). It is trained (docs/method.md F.4) but unused for semantic pseudo
  labels; the mean-shift layer the reference applies to it at inference serves instance
  segmentation only and is not part of this model.

State-dict keys: ``backbone.<torchvision key>`` (no ``fc``), ``edge1..edge6.*``, ``dp1..dp7.*``.
Saved and loaded through :mod:`sipe.models.checkpoint` (:func:`load_irn`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from sipe.errors import ConfigError
from sipe.models.backbone import BACKBONES, backbone_stages, build_resnet, freeze_bn, stage_channels
from sipe.models.checkpoint import SavedModel, load_model

MODEL_KIND = "irn"
EDGE_CHANNELS = 32


def _head(c_in: int, c_out: int, groups: int, upsample: int = 1) -> nn.Sequential:
    """1×1 conv (no bias) → GroupNorm → [bilinear ×upsample, align_corners=False] → ReLU (docs/method.md F.2)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, bias=False), nn.GroupNorm(groups, c_out)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x[..., :like.shape[-2], :like.shape[-1]]


class IRN(SavedModel):
    """The IRN of docs/method.md F.2 on a torchvision ResNet; ``forward`` → (edge logits [N,1,h4,w4], displacement [N,2,h4,w4])."""

    LABEL, MARKER = "IRN", "model"  # config["model"] == MODEL_KIND

    def __init__(self, backbone: str = "resnet50", weights: str | os.PathLike | None = "imagenet"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"IRN: unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        self.config = {"model": MODEL_KIND, "backbone": backbone, "weights": None if weights is None else str(weights)}
        self.backbone = build_resnet(backbone, weights)
        self.backbone.fc = nn.Identity()
        self.backbone.requires_grad_(False)  # fully frozen: not in the optimizer, outputs detached (docs/method.md F.2)

        c1, c2, c3, c4, c5 = stage_channels(backbone)
        self.edge1 = _head(c1, EDGE_CHANNELS, 4)
        self.edge2 = _head(c2, EDGE_CHANNELS, 4)
        self.edge3 = _head(c3, EDGE_CHANNELS, 4, upsample=2)
        self.edge4 = _head(c4, EDGE_CHANNELS, 4, upsample=4)
        self.edge5 = _head(c5, EDGE_CHANNELS, 4, upsample=4)
        self.edge6 = nn.Conv2d(5 * EDGE_CHANNELS, 1, 1, bias=True)

        self.dp1 = _head(c1, 64, 8)
        self.dp2 = _head(c2, 128, 16)
        self.dp3 = _head(c3, 256, 16)
        self.dp4 = _head(c4, 256, 16, upsample=2)
        self.dp5 = _head(c5, 256, 16, upsample=2)
        self.dp6 = _head(768, 256, 16, upsample=2)
        self.dp7 = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256), nn.ReLU(inplace=True),
                                 nn.Conv2d(256, 2, 1, bias=False))

    @classmethod
    def from_config(cls, config: dict) -> IRN:
        """The config holds the kind marker ``model`` besides the constructor's ``backbone`` and ``weights``."""
        return cls(config["backbone"], weights=None)

    def train(self, mode: bool = True):
        """Train/eval mode for the heads; the backbone (and its BatchNorm) always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return freeze_bn(self)

    def edge_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.edge1, self.edge2, self.edge3, self.edge4, self.edge5, self.edge6) for p in m.parameters()]

    def displacement_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.dp1, self.dp2, self.dp3, self.dp4, self.dp5, self.dp6, self.dp7) for p in m.parameters()]

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five backbone stage outputs (strides 4, 4, 8, 16, 16), computed without autograd."""
        with torch.no_grad():
            features, x = [], images
            for stage in backbone_stages(self.backbone):
                x = stage(x)
                features.append(x)
        return features

    def edge_logits(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """Boundary logits [N,1,h4,w4] from the stage outputs (docs/method.md F.2 edge branch)."""
        x1, x2, x3, x4, x5 = stages
        e2 = self.edge2(x2)
        parts = [self.edge1(x1), e2, _crop(self.edge3(x3), e2), _crop(self.edge4(x4), e2), _crop(self.edge5(x5), e2)]
        return self.edge6(torch.cat(parts, dim=1))

    def displacement(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """Displacement field [N,2,h4,w4] from the stage outputs (docs/method.md F.2 displacement branch)."""
        x1, x2, x3, x4, x5 = stages
        d2, d3 = self.dp2(x2), self.dp3(x3)
        d6 = self.dp6(torch.cat([d3, _crop(self.dp4(x4), d3), _crop(self.dp5(x5), d3)], dim=1))
        return self.dp7(torch.cat([self.dp1(x1), d2, _crop(d6, d2)], dim=1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stages = self.stages(images)
        return self.edge_logits(stages), self.displacement(stages)

    @torch.no_grad()
    def edge(self, images: torch.Tensor) -> torch.Tensor:
        """Boundary logits only (inference for pseudo labels, docs/method.md F.5 step 1)."""
        return self.edge_logits(self.stages(images))


def load_irn(path: str | os.PathLike, backbone: str | None = None, device="cpu") -> IRN:
    """The IRN saved in ``path`` (:func:`sipe.models.checkpoint.load_model`; its backbone weights included),
    checked for ``backbone``."""
    return load_model(path, IRN, device, backbone=backbone)
