"""tiny_frcnn: Faster R-CNN on a three-layer convolutional backbone, scored on COCO bbox mAP.

Everything but the model comes from accelbench's detection case (COCO loading, evaluation, the SGD recipe); the case
only says how to build its network and which backbones it offers. Its defaults.yaml sits next to this file.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from cases.detection.case import DetectionCase
from suite.errors import ConfigError


def tiny_backbone(width: int = 32) -> nn.Module:
    layers: list[nn.Module] = []
    channels = 3
    for out in (width // 2, width, 2 * width):
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    body = nn.Sequential(*layers)
    body.out_channels = channels  # what torchvision's detectors read
    return body


class TinyFasterRCNNCase(DetectionCase):
    name: ClassVar[str] = "tiny_frcnn"
    backbones: ClassVar[tuple[str, ...]] = ("tiny_convnet",)
    detector_class: ClassVar[type[nn.Module]] = FasterRCNN

    def check_config(self) -> None:
        if self.config.model.backbone_weights is not None:
            raise ConfigError("tiny_convnet has no pretrained weights", key="model.backbone_weights")
        super().check_config()

    def build_model(self) -> nn.Module:
        settings = self.config.model
        self.trainable_layers = 3  # all of it: random init
        anchors = AnchorGenerator(sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),))
        pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
        return FasterRCNN(tiny_backbone(), num_classes=settings.num_classes, min_size=settings.min_size,
                          max_size=settings.max_size, rpn_anchor_generator=anchors, box_roi_pool=pool,
                          **settings.detector_kwargs)
