"""Networks of the pipeline: the stride-16 ResNet backbone (docs/method.md B.1), SIPENet (docs/method.md B), IRN (docs/method.md F.2)
and DeepLabV2 (docs/method.md G.1); their one checkpoint contract (:mod:`sipe.models.checkpoint`) and the
converters of other projects' weights (:mod:`sipe.models.convert`)."""

from sipe.models.backbone import (BACKBONES, STAGE_NAMES, FrozenBNResNet, backbone_stages, build_resnet, freeze_bn,
                                  imagenet_weights_file, stage_channels)
from sipe.models.checkpoint import SavedModel, load_model, save_model
from sipe.models.convert import convert_deeplab_init, convert_reference_checkpoint
from sipe.models.sipe_net import SIPENet, load_sipe

__all__ = [
    "BACKBONES", "STAGE_NAMES", "FrozenBNResNet", "SIPENet", "SavedModel", "backbone_stages", "build_resnet",
    "convert_deeplab_init", "convert_reference_checkpoint", "freeze_bn", "imagenet_weights_file", "load_model",
    "load_sipe", "save_model", "stage_channels",
]
