"""torchvision detector construction from a local backbone file (or random init), never downloading anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from suite.config import ModelSettings
from suite.errors import WeightsError

ALL_RESNET_LAYERS = 5


def resnet50_fpn(settings: ModelSettings, *, returned_layers: list[int] | None = None,
                 extra_blocks: Callable[[], ExtraFPNBlock] | None = None) -> tuple[BackboneWithFPN, int]:
    """A ResNet-50-FPN body as torchvision builds it; returns it with the number of trainable stages used.

    With weights: FrozenBatchNorm and `trainable_backbone_layers` trainable stages (the reference recipe).
    Random init: trainable BatchNorm and all stages trainable, torchvision's rule for an untrained backbone.
    """
    pretrained = settings.backbone_weights is not None
    body = resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d)
    if pretrained:
        path = Path(settings.backbone_weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            body.load_state_dict(state)
        except (RuntimeError, OSError, KeyError) as e:
            raise WeightsError(f"model.backbone_weights: {path} is not a ResNet-50 state dict: "
                               f"{str(e).splitlines()[0]}") from e
    trainable = settings.trainable_backbone_layers if pretrained else ALL_RESNET_LAYERS
    fpn = _resnet_fpn_extractor(body, trainable, returned_layers=returned_layers,
                                extra_blocks=extra_blocks() if extra_blocks else None)
    return fpn, trainable
