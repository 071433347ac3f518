"""COCO evaluation: model outputs -> COCO result dicts -> COCOeval stats per IoU type, by a chosen backend.

mAP is `stats[0]` (AP@[.50:.95], all areas, 100 detections), restricted to the images that were evaluated.

Backends (`eval.backend`):
    pycocotools      the reference implementation (what the published pages used)
    faster_coco_eval the C++ reimplementation from the `faster-coco-eval` package (optional extra `fast-eval`);
                     same 12 stats on the same results (tests/test_evaluator.py checks it), many times faster
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from suite.errors import ConfigError

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MASK_THRESHOLD = 0.5


def check_backend(backend: str) -> None:
    """Raise ConfigError (exit 2, before any run) when the chosen backend is unknown or not installed."""
    if backend not in STATS_FUNCTIONS:
        raise ConfigError(f"unknown evaluation backend {backend!r} (available: {', '.join(STATS_FUNCTIONS)})",
                          key="eval.backend")
    if backend == "faster_coco_eval" and importlib.util.find_spec("faster_coco_eval") is None:
        raise ConfigError("the faster_coco_eval backend needs the faster-coco-eval package: "
                          "pip install -e '.[fast-eval]'", key="eval.backend")


def _pycocotools_stats(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, image_ids: list[int]
                       ) -> tuple[list[float], str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        # loadRes adds keys (area, id, ...) to the dicts it gets: give it shallow copies, not ours. A deep copy
        # would cost more than the evaluation's own bookkeeping on a large prediction set.
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        evaluation = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(v) for v in evaluation.stats], buffer.getvalue()


# faster-coco-eval indexes the ground truth with its own COCO class: build it once per annotation set (per
# pycocotools COCO object), not once per evaluation.
_FAST_GT: weakref.WeakKeyDictionary[COCO, Any] = weakref.WeakKeyDictionary()


def _fast_ground_truth(coco_gt: COCO) -> Any:
    from faster_coco_eval import COCO as FastCOCO

    fast = _FAST_GT.get(coco_gt)
    if fast is None:
        # Its own copy of the document: indexing may annotate it, and the pycocotools index shares ours. Not
        # `use_deepcopy=True`, which would also deep-copy every result list given to loadRes.
        fast = _FAST_GT[coco_gt] = FastCOCO(copy.deepcopy(coco_gt.dataset))
    return fast


def _faster_coco_eval_stats(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, image_ids: list[int]
                            ) -> tuple[list[float], str]:
    from faster_coco_eval import COCOeval_faster

    lines: list[str] = []
    fast_gt = _fast_ground_truth(coco_gt)
    coco_dt = fast_gt.loadRes([dict(r) for r in results])
    evaluation = COCOeval_faster(fast_gt, coco_dt, iouType=iou_type, print_function=lines.append)
    evaluation.params.imgIds = image_ids
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return [float(v) for v in evaluation.stats[:len(STAT_NAMES)]], "\n".join(str(line) for line in lines)


STATS_FUNCTIONS: dict[str, Callable[[COCO, list[dict[str, Any]], str, list[int]], tuple[list[float], str]]] = {
    "pycocotools": _pycocotools_stats,
    "faster_coco_eval": _faster_coco_eval_stats,
}


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
    distributed sampler repeats to even out its shards. A rank that only collects results needs no ground truth
    (`coco_gt` None); the one that scores them does.
    """

    def __init__(self, coco_gt: COCO | None, iou_types: Sequence[str], backend: str = "pycocotools") -> None:
        check_backend(backend)
        self.coco_gt = coco_gt
        self.iou_types = tuple(iou_types)
        self.backend = backend
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
        if self.coco_gt is None:
            raise ValueError("this evaluator only collects results: scoring them needs the ground truth")
        stats: dict[str, list[float]] = {}
        all_results = self.results
        for iou_type in self.iou_types:
            results = [r for r in all_results if iou_type != "segm" or "segmentation" in r]
            if not results:
                stats[iou_type] = [0.0] * len(STAT_NAMES)
                self.summaries[iou_type] = "no detections"
                continue
            stats[iou_type], self.summaries[iou_type] = STATS_FUNCTIONS[self.backend](
                self.coco_gt, results, iou_type, sorted(self.per_image))
        return stats
