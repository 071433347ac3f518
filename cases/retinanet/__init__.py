"""RetinaNet ResNet-50-FPN (torchvision `retinanet_resnet50_fpn`, v1), scored on bbox mAP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from cases.detection.case import DetectionCase, ImportedOnUse

if TYPE_CHECKING:
    from torch import nn


class RetinaNetCase(DetectionCase):
    name: ClassVar[str] = "retinanet"
    detector_class: ClassVar[type[nn.Module]] = ImportedOnUse("torchvision.models.detection:RetinaNet")

    def backbone_layers(self) -> dict[str, Any]:
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7

        # P3-P7 as in torchvision: skip C2 (too many anchors), add P6/P7 from P5.
        return {"returned_layers": [2, 3, 4], "extra_blocks": lambda: LastLevelP6P7(256, 256)}
