"""Mask R-CNN ResNet-50-FPN (torchvision `maskrcnn_resnet50_fpn`), scored on bbox and segm mAP."""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision.models.detection import MaskRCNN

from cases.detection.case import DetectionCase


class MaskRCNNCase(DetectionCase):
    name: ClassVar[str] = "mask_rcnn"
    iou_types: ClassVar[tuple[str, ...]] = ("bbox", "segm")
    needs_masks: ClassVar[bool] = True
    detector_class: ClassVar[type[nn.Module]] = MaskRCNN
