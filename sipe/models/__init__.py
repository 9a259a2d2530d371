"""Networks of the pipeline: the stride-16 ResNet backbone (SPEC B.1) and SIPENet (SPEC B), their
checkpoints, and the importer for the SIPE authors' checkpoint."""

from sipe.models.backbone import (BACKBONES, STAGE_NAMES, FrozenBNResNet, backbone_stages, build_resnet,
                                  freeze_bn, imagenet_weights_file, stage_channels)
from sipe.models.checkpoint import load_sipe, read_torch_file, save_model
from sipe.models.convert import convert_reference_checkpoint
from sipe.models.sipe_net import SIPENet

__all__ = [
    "BACKBONES", "STAGE_NAMES", "FrozenBNResNet", "SIPENet", "backbone_stages", "build_resnet",
    "convert_reference_checkpoint", "freeze_bn", "imagenet_weights_file", "load_sipe", "read_torch_file",
    "save_model", "stage_channels",
]
