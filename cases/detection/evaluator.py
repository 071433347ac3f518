"""COCO evaluation with pycocotools: model outputs -> COCO result dicts -> COCOeval stats per IoU type.

mAP is `stats[0]` (AP@[.50:.95], all areas, 100 detections), restricted to the images that were evaluated.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MASK_THRESHOLD = 0.5


def results_from_output(image_id: int, output: dict[str, torch.Tensor], iou_types: Sequence[str]
                        ) -> list[dict[str, Any]]:
    """Convert one torchvision detection output (xyxy boxes, labels = COCO category ids) to COCO results."""
    boxes = output["boxes"].detach().float().cpu()
    if boxes.numel() == 0:
        return []
    xywh = boxes.clone()
    xywh[:, 2:] -= xywh[:, :2]
    scores = output["scores"].detach().float().cpu().tolist()
    labels = output["labels"].detach().cpu().tolist()
    results = [{"image_id": image_id, "category_id": int(label), "bbox": [round(v, 3) for v in box],
                "score": float(score)} for box, label, score in zip(xywh.tolist(), labels, scores, strict=False)]
    if "segm" in iou_types:
        masks = (output["masks"].detach().cpu()[:, 0] > MASK_THRESHOLD).numpy().astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        for result, rle in zip(results, rles, strict=False):
            rle["counts"] = rle["counts"].decode("ascii")
            result["segmentation"] = rle
    return results


class CocoEvaluator:
    """Accumulates COCO-format results per image and evaluates them against the ground truth.

    Results are kept per image id, so shards from several ranks merge without double counting the images that a
    distributed sampler repeats to even out its shards.
    """

    def __init__(self, coco_gt: COCO, iou_types: Sequence[str]) -> None:
        self.coco_gt = coco_gt
        self.iou_types = tuple(iou_types)
        self.per_image: dict[int, list[dict[str, Any]]] = {}
        self.summaries: dict[str, str] = {}

    def add(self, image_ids: Iterable[int], results: Iterable[dict[str, Any]]) -> None:
        for image_id in image_ids:
            self.per_image.setdefault(int(image_id), [])
        for result in results:
            self.per_image.setdefault(int(result["image_id"]), []).append(result)

    def add_outputs(self, image_ids: Sequence[int], outputs: Sequence[dict[str, torch.Tensor]]) -> None:
        for image_id, output in zip(image_ids, outputs, strict=True):
            self.per_image[int(image_id)] = results_from_output(int(image_id), output, self.iou_types)

    def merge(self, shards: Iterable[Mapping[int, list[dict[str, Any]]]]) -> None:
        """Add other ranks' per-image results; an image already present keeps its first results."""
        for shard in shards:
            for image_id, results in shard.items():
                self.per_image.setdefault(int(image_id), results)

    @property
    def results(self) -> list[dict[str, Any]]:
        return [r for image_id in sorted(self.per_image) for r in self.per_image[image_id]]

    def evaluate(self) -> dict[str, list[float]]:
        """Return the 12 COCO stats per IoU type. With no detections at all, AP and AR are 0 by definition."""
        stats: dict[str, list[float]] = {}
        for iou_type in self.iou_types:
            results = [r for r in self.results if iou_type != "segm" or "segmentation" in r]
            if not results:
                stats[iou_type] = [0.0] * len(STAT_NAMES)
                self.summaries[iou_type] = "no detections"
                continue
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                # loadRes adds areas/ids to the dicts it is given; keep ours unchanged.
                coco_dt = self.coco_gt.loadRes(copy.deepcopy(results))
                evaluation = COCOeval(self.coco_gt, coco_dt, iouType=iou_type)
                evaluation.params.imgIds = sorted(self.per_image)
                evaluation.evaluate()
                evaluation.accumulate()
                evaluation.summarize()
            self.summaries[iou_type] = buffer.getvalue()
            stats[iou_type] = [float(v) for v in evaluation.stats]
        return stats
