"""Faster R-CNN ResNet-50-FPN (torchvision `fasterrcnn_resnet50_fpn`), scored on bbox mAP.

For CPU learning checks the case also offers torchvision's MobileNetV3-Large-FPN variant (`model.backbone:
mobilenet_v3_large`, random init only): about 4x cheaper per step at small image sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from cases.detection.case import DetectionCase, ImportedOnUse
from suite.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


class FasterRCNNCase(DetectionCase):
    name: ClassVar[str] = "faster_rcnn"
    backbones: ClassVar[tuple[str, ...]] = ("resnet50", "mobilenet_v3_large")
    detector_class: ClassVar[type[nn.Module]] = ImportedOnUse("torchvision.models.detection:FasterRCNN")

    def check_config(self) -> None:
        settings = self.config.model
        if settings.backbone == "mobilenet_v3_large" and settings.backbone_weights is not None:
            raise ConfigError("the mobilenet_v3_large backbone is offered for random init only",
                              key="model.backbone_weights")
        super().check_config()

    def build_model(self) -> nn.Module:
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

        settings = self.config.model
        if settings.backbone != "mobilenet_v3_large":
            return super().build_model()
        self.trainable_layers = 6  # every stage of the untrained MobileNet trains, as torchvision does
        return fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                                 num_classes=settings.num_classes, min_size=settings.min_size,
                                                 max_size=settings.max_size, **settings.detector_kwargs)
