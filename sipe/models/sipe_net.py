"""The SIPE network (docs/method.md B.1–B.7): ResNet backbone, hierarchical side features, CAM + background,
structure-aware seeds, image-specific prototypes and IS-CAM.

State-dict keys: ``backbone.<torchvision ResNet key>`` (no ``fc``), ``side1..side4.weight``,
``classifier.weight``. The paper's math lives in :mod:`sipe.ipe`. Saved and loaded through
:mod:`sipe.models.checkpoint` (:func:`load_sipe`).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from sipe import ipe
from sipe.errors import ConfigError
from sipe.models.backbone import BACKBONES, backbone_stages, build_resnet, freeze_bn, stage_channels
from sipe.models.checkpoint import SavedModel, load_model

SEED_METHODS = ("structure", "threshold", "argmax")
PROTOTYPE_FEATURES = ("hierarchical", "semantic")
SIDE_CHANNELS = (128, 128, 256, 256)  # docs/method.md B.2: side1..side4 → 768-d hierarchical feature
NORM_EPS = 1e-5


def _l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel L2 normalisation over channels, S / (‖S‖₂ + 1e-5) (docs/method.md B.2)."""
    return x / (x.norm(dim=1, keepdim=True) + NORM_EPS)


class SIPENet(SavedModel):
    """SIPE (Chen et al., CVPR 2022) on a stride-16 ResNet (docs/method.md B).

    Ablation switches (paper Fig. 8 / Table 3): ``seed_method`` structure (eq. 3–5) | threshold
    (constant background ``seed_threshold``) | argmax; ``prototype_feature`` hierarchical (768-d,
    docs/method.md B.2) | semantic (layer4 output); ``background_prototype=False`` replaces the IS-CAM
    background channel by 1 − max of its foreground channels.
    """

    LABEL, MARKER = "SIPE", "seed_method"

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights: str | os.PathLike | None = "imagenet",
                 seed_method: str = "structure", seed_threshold: float = 0.3,
                 prototype_feature: str = "hierarchical", background_prototype: bool = True,
                 bg_attenuation: float = 0.5):
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"SIPENet: num_classes must be a positive integer, got {num_classes!r}")
        if backbone not in BACKBONES:
            raise ConfigError(f"SIPENet: unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        if seed_method not in SEED_METHODS:
            raise ConfigError(f"SIPENet: unknown seed_method {seed_method!r}; choose one of {', '.join(SEED_METHODS)}")
        if prototype_feature not in PROTOTYPE_FEATURES:
            raise ConfigError(f"SIPENet: unknown prototype_feature {prototype_feature!r}; "
                              f"choose one of {', '.join(PROTOTYPE_FEATURES)}")
        self.config = {
            "num_classes": num_classes, "backbone": backbone,
            "weights": None if weights is None else str(weights),
            "seed_method": seed_method, "seed_threshold": float(seed_threshold),
            "prototype_feature": prototype_feature, "background_prototype": bool(background_prototype),
            "bg_attenuation": float(bg_attenuation),
        }
        self.num_classes = num_classes
        self.seed_method = seed_method
        self.seed_threshold = float(seed_threshold)
        self.prototype_feature = prototype_feature
        self.background_prototype = bool(background_prototype)
        self.bg_attenuation = float(bg_attenuation)

        self.backbone = build_resnet(backbone, weights)
        self.backbone.fc = nn.Identity()  # classification head unused (docs/method.md B.1: fc dropped)
        # Stages 0–2 never receive a gradient (their output is detached, docs/method.md B.1); with
        # requires_grad off, autograd also keeps none of their activations.
        for module in (self.backbone.layer1, self.backbone.layer2):
            module.requires_grad_(False)

        channels = stage_channels(backbone)
        self.side1, self.side2, self.side3, self.side4 = (
            nn.Conv2d(c_in, c_out, 1, bias=False) for c_in, c_out in zip(channels[1:], SIDE_CHANNELS))
        self.classifier = nn.Conv2d(channels[4], num_classes, 1, bias=False)
        freeze_bn(self)

    # -- modes and parameters ------------------------------------------------------------
    def train(self, mode: bool = True):
        """Set the train/eval mode; BatchNorm stays in eval mode (frozen statistics, docs/method.md B.1)."""
        super().train(mode)
        return freeze_bn(self)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters that require grad = layer3/layer4, new layers = classifier + side1..4) (docs/method.md B.1, C)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        new = [p for m in (self.classifier, self.side1, self.side2, self.side3, self.side4) for p in m.parameters()]
        return backbone, new

    # -- shared trunk ------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone + side branches (docs/method.md B.1–B.2): (x4 [N,2048,h,w] semantic feature, hie_fea [N,768,h,w]).

        The stage-2 output is detached (the gradient cut of docs/method.md B.1); the side convs see detached
        x1..x4, so only the GSC loss trains them and they send no gradient into the backbone.
        """
        # built per call, never registered: no aliased state-dict keys, and replicas (DataParallel) stay correct
        stage0, stage1, stage2, stage3, stage4 = backbone_stages(self.backbone)
        x1 = stage1(stage0(images))
        x2 = stage2(x1).detach()
        x3 = stage3(x2)
        x4 = stage4(x3)
        size = x3.shape[-2:]
        sides = []
        for conv, x in zip((self.side1, self.side2, self.side3, self.side4), (x1, x2, x3, x4)):
            s = _l2_normalise(conv(x.detach()))
            if s.shape[-2:] != size:
                s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            sides.append(s)
        return x4, torch.cat(sides, dim=1)

    def _seeds(self, cams: torch.Tensor, feature: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One-hot seeds by the configured method (docs/method.md B.4 / paper Fig. 8); never carries autograd."""
        with torch.no_grad():
            cams, feature = cams.detach(), feature.detach()
            if self.seed_method == "structure":
                return ipe.locate_seeds(cams, feature, mask, self.bg_attenuation)
            if self.seed_method == "threshold":
                return ipe.threshold_seeds(cams, mask, self.seed_threshold)
            return ipe.argmax_seeds(cams, mask)

    def _is_cam(self, seeds: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """Prototypes (eq. 6) and IS-CAM (eq. 7), docs/method.md B.5; without a background prototype the
        background channel is 1 − max of the foreground IS-CAM channels."""
        if self.background_prototype:
            return ipe.is_cam(ipe.image_prototypes(seeds, feature), feature)
        fg = ipe.is_cam(ipe.image_prototypes(seeds[:, 1:], feature), feature)
        return torch.cat([1.0 - fg.amax(dim=1, keepdim=True), fg], dim=1)

    # -- training path (docs/method.md B.7 left column) ------------------------------------------------
    def forward(self, images: torch.Tensor, valid_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training forward: {score [N,C], cam [N,C+1,h,w] (masked M, the GSC target), seeds, is_cam}.

        ``valid_mask`` [N,C+1,H,W] (1 = real pixel and class present, docs/method.md A.4) is nearest-resized to
        the s16 grid; a [N,C+1,1,1] label (in-training validation, docs/method.md C) broadcasts the same way.
        Seeds use the semantic feature x4 (docs/method.md B.7); prototypes and IS-CAM the hierarchical one.
        """
        n, k = images.shape[0], self.num_classes + 1
        if valid_mask.dim() != 4 or valid_mask.shape[:2] != (n, k):
            raise ValueError(f"valid_mask must be [N={n}, C+1={k}, H, W], got {tuple(valid_mask.shape)}")
        x4, hie = self.features(images)
        cam = self.classifier(x4)
        score = cam.mean(dim=(2, 3))  # GAP of the raw CAM (docs/method.md B.3)
        valid = F.interpolate(valid_mask.to(cam), size=cam.shape[-2:], mode="nearest")
        m = ipe.cam_with_background(cam) * valid  # background computed BEFORE masking (docs/method.md B.3)
        seeds = self._seeds(m, x4, valid)
        is_cam = self._is_cam(seeds, hie if self.prototype_feature == "hierarchical" else x4)
        return {"score": score, "cam": m, "seeds": seeds, "is_cam": is_cam}

    # -- inference path (docs/method.md B.7 right column) ----------------------------------------------
    @torch.no_grad()
    def infer(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference on [image, hflip(image)]: (ReLU'd flip-summed raw CAM [C,h,w], IS-CAM [C+1,h,w]).

        CAM and hie_fea are flip-summed before any normalisation; M is not masked; seeds come from
        the flip-summed hie_fea with ``label`` ([C+1], label[0] = 1) as the mask (docs/method.md B.4, B.7).
        """
        k = self.num_classes + 1
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"infer takes one image [1,3,H,W], got {tuple(image.shape)}")
        if label.numel() != k:
            raise ValueError(f"label must have C+1={k} entries, got {tuple(label.shape)}")
        x4, hie = self.features(torch.cat([image, image.flip(-1)]))
        cam = self.classifier(x4)
        cam = cam[:1] + cam[1:].flip(-1)
        hie = hie[:1] + hie[1:].flip(-1)
        m = ipe.cam_with_background(cam)
        mask = label.reshape(1, k, 1, 1).to(m)
        seeds = self._seeds(m, hie, mask)
        feature = hie if self.prototype_feature == "hierarchical" else x4[:1] + x4[1:].flip(-1)
        return F.relu(cam[0]), self._is_cam(seeds, feature)[0]


def load_sipe(path: str | os.PathLike, num_classes: int | None = None, device="cpu") -> SIPENet:
    """The SIPENet saved in ``path`` (:func:`sipe.models.checkpoint.load_model`), checked for ``num_classes``."""
    return load_model(path, SIPENet, device, num_classes=num_classes)
