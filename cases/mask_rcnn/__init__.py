"""Mask R-CNN ResNet-50-FPN (torchvision `maskrcnn_resnet50_fpn`), scored on bbox and segm mAP."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from cases.detection.case import DetectionCase, ImportedOnUse

if TYPE_CHECKING:
    from torch import nn


class MaskRCNNCase(DetectionCase):
    name: ClassVar[str] = "mask_rcnn"
    iou_types: ClassVar[tuple[str, ...]] = ("bbox", "segm")
    needs_masks: ClassVar[bool] = True
    detector_class: ClassVar[type[nn.Module]] = ImportedOnUse("torchvision.models.detection:MaskRCNN")
