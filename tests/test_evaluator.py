"""The evaluator against pycocotools on real COCO annotations, and ground truth scoring 1.0."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cases.detection import evaluator as evaluator_module
from cases.detection import synthetic_predictions
from cases.detection.data import load_coco
from cases.detection.evaluator import CocoEvaluator, results_from_output
from suite.errors import ConfigError
from tests.helpers import COCO_FIXTURE

ANNOTATIONS = COCO_FIXTURE / "instances_val2014_100.json"
PUBLISHED_AP = {"bbox": 0.5045806987249628, "segm": 0.3195452758576433}


@pytest.fixture(scope="module")
def coco_gt() -> COCO:
    return load_coco(ANNOTATIONS)


def _direct_pycocotools(iou_type: str, results_file: str) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ANNOTATIONS))
        dt = gt.loadRes(str(COCO_FIXTURE / results_file))
        evaluation = COCOeval(gt, dt, iou_type)
        evaluation.params.imgIds = sorted(gt.getImgIds())
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return list(evaluation.stats)


@pytest.mark.parametrize(("iou_type", "results_file"), [
    ("bbox", "instances_val2014_fakebbox100_results.json"),
    ("segm", "instances_val2014_fakesegm100_results.json"),
])
def test_stats_match_pycocotools_called_directly(coco_gt: COCO, iou_type: str, results_file: str) -> None:
    evaluator = CocoEvaluator(coco_gt, [iou_type])
    evaluator.add(coco_gt.getImgIds(), json.loads((COCO_FIXTURE / results_file).read_text()))
    stats = evaluator.evaluate()[iou_type]
    assert stats == pytest.approx(_direct_pycocotools(iou_type, results_file), abs=1e-12)
    assert stats[0] == pytest.approx(PUBLISHED_AP[iou_type], abs=1e-10)


def test_ground_truth_as_predictions_scores_one(coco_gt: COCO) -> None:
    results = []
    for ann in coco_gt.dataset["annotations"]:
        if ann["iscrowd"]:
            continue
        rle = coco_gt.annToRLE(ann)
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"],
                        "score": 1.0, "segmentation": rle})
    evaluator = CocoEvaluator(coco_gt, ["bbox", "segm"])
    evaluator.add(coco_gt.getImgIds(), results)
    stats = evaluator.evaluate()
    assert stats["bbox"][0] == pytest.approx(1.0)
    assert stats["segm"][0] == pytest.approx(1.0)


def test_model_outputs_are_converted_exactly(coco_gt: COCO) -> None:
    """A torchvision-style output equal to the ground truth of some images (boxes xyxy, 0-1 masks) scores 1.0."""
    image_ids = sorted(coco_gt.getImgIds())[:10]
    evaluator = CocoEvaluator(coco_gt, ["bbox", "segm"])
    outputs = []
    for image_id in image_ids:
        anns = [a for a in coco_gt.imgToAnns[image_id] if not a["iscrowd"]]
        info = coco_gt.imgs[image_id]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        masks = torch.stack([torch.as_tensor(coco_gt.annToMask(a), dtype=torch.float32) for a in anns]) \
            if anns else torch.zeros(0, info["height"], info["width"])
        outputs.append({"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in anns]),
                        "scores": torch.ones(len(anns)), "masks": masks[:, None]})
    evaluator.add_outputs(image_ids, outputs)
    stats = evaluator.evaluate()
    assert stats["bbox"][0] == pytest.approx(1.0, abs=1e-3)
    assert stats["segm"][0] == pytest.approx(1.0, abs=1e-3)


def test_no_detections_is_zero_ap(coco_gt: COCO) -> None:
    evaluator = CocoEvaluator(coco_gt, ["bbox"])
    evaluator.add_outputs([coco_gt.getImgIds()[0]], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0),
                                                      "scores": torch.zeros(0)}])
    assert evaluator.evaluate()["bbox"][0] == 0.0


def test_results_from_output_format() -> None:
    output = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "labels": torch.tensor([18]),
              "scores": torch.tensor([0.9])}
    (result,) = results_from_output(7, output, ["bbox"])
    assert result == {"image_id": 7, "category_id": 18, "bbox": [10.0, 20.0, 20.0, 40.0],
                      "score": pytest.approx(0.9)}


def _synthetic_set() -> tuple[COCO, list[dict], list[int]]:
    document = synthetic_predictions.ground_truth(300, seed=3)
    coco = COCO()
    coco.dataset = document
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, synthetic_predictions.predictions(document, 30, seed=4), [i["id"] for i in document["images"]]


@pytest.mark.parametrize("dataset", ["coco-bbox", "coco-segm", "synthetic-bbox"])
def test_fast_backend_gives_the_same_stats(coco_gt: COCO, dataset: str) -> None:
    """faster_coco_eval and pycocotools on the same results: the same 12 stats (up to float summation order)."""
    if dataset == "synthetic-bbox":
        gt, results, image_ids = _synthetic_set()
        iou_type = "bbox"
    else:
        iou_type = dataset.split("-")[1]
        gt, image_ids = coco_gt, coco_gt.getImgIds()
        results = json.loads((COCO_FIXTURE / f"instances_val2014_fake{iou_type}100_results.json").read_text())
    stats = {}
    for backend in ("pycocotools", "faster_coco_eval"):
        evaluator = CocoEvaluator(gt, [iou_type], backend)
        evaluator.add(image_ids, results)
        stats[backend] = evaluator.evaluate()[iou_type]
        assert "Average Precision" in evaluator.summaries[iou_type]
    assert stats["faster_coco_eval"] == pytest.approx(stats["pycocotools"], abs=1e-12)
    assert 0.05 < stats["pycocotools"][0] < 1  # a set that exercises matching, not an empty or perfect one
    assert "area" not in results[0] and "id" not in results[0]  # the caller's results are left as they were


def test_fast_backend_not_installed_is_a_config_error(monkeypatch: pytest.MonkeyPatch, coco_gt: COCO) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(evaluator_module.importlib.util, "find_spec",
                        lambda name, *args: None if name == "faster_coco_eval" else find_spec(name, *args))
    with pytest.raises(ConfigError, match=r"eval.backend: .*faster-coco-eval package: pip install"):
        CocoEvaluator(coco_gt, ["bbox"], "faster_coco_eval")
