"""The detection cases' `model:` config section: backbone, weights, classes, image sizes and detector arguments.

The suite validates it with the rest of the config (a case's `model_settings`), so a typo here is a one-line error
naming the file and the key, with a "did you mean", before any run exists.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from suite.config import MAX_IMAGE_SIDE, Strict


class DetectionModelSettings(Strict):
    # Each case names its backbones (a case from another package brings its own); the case checks the choice.
    backbone: str = Field("resnet50", min_length=1, description="one of the case's backbones")
    backbone_weights: str | None = Field(None, description="local file; null = random init (recorded as such)")
    trainable_backbone_layers: int = Field(3, ge=0, le=5)
    num_classes: int = Field(91, gt=1, le=100_000)
    min_size: int = Field(800, gt=0, le=MAX_IMAGE_SIDE)
    max_size: int = Field(1333, gt=0, le=MAX_IMAGE_SIDE)
    detector_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of the torchvision detector, e.g. "
        "rpn_post_nms_top_n_train; checked against its signature")
