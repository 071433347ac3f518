"""torchvision detector construction from a local backbone file (or random init), never downloading anything."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from suite.config import ModelSettings
from suite.errors import ConfigError, WeightsError, did_you_mean

ALL_RESNET_LAYERS = 5
# Constructor arguments set by the suite itself, or that take modules (not expressible in YAML).
RESERVED_ARGUMENTS = {"self", "backbone", "num_classes", "min_size", "max_size", "kwargs"}
MODULE_SUFFIXES = ("_generator", "_head", "_pool", "_predictor", "_matcher", "head")


def detector_arguments(detector_class: type[nn.Module]) -> list[str]:
    """Scalar keyword arguments of a torchvision detector and of its input transform (which gets its **kwargs)."""
    names = list(inspect.signature(detector_class.__init__).parameters)
    names += list(inspect.signature(GeneralizedRCNNTransform.__init__).parameters)
    return sorted({n for n in names if n not in RESERVED_ARGUMENTS and not n.endswith(MODULE_SUFFIXES)})


def check_detector_kwargs(detector_class: type[nn.Module], kwargs: Mapping[str, Any]) -> None:
    # torchvision forwards unknown keywords to its transform, which swallows them: a typo would do nothing.
    valid = detector_arguments(detector_class)
    for key in kwargs:
        if key not in valid:
            raise ConfigError(f"{detector_class.__name__} has no argument {key!r}{did_you_mean(key, valid)}; "
                              f"valid: {', '.join(valid)}", key=f"model.detector_kwargs.{key}")


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
