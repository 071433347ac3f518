"""COCO evaluation time: pycocotools (reference) against faster_coco_eval on one large synthetic prediction set.

The set (cases/detection/synthetic_predictions.py) is N images of COCO-like ground truth with a detector's worth of
scored boxes per image. Each backend is timed through the suite's own evaluator (`CocoEvaluator.evaluate`: loading
the results, per-image matching, accumulation, summary), the fast one including its one-off ground-truth index.
Prints both times and the largest difference between their 12 stats, then the speed-up last. Target: >= 8x, stats
equal.

    .venv/bin/python benchmarks/eval_speed.py                     # 5,000 images x 100 detections
    .venv/bin/python benchmarks/eval_speed.py --images 500        # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

from common import finish

TARGET = 8.0
STATS_TOLERANCE = 1e-12  # the two sum in different orders: equal up to float rounding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    from pycocotools.coco import COCO

    from cases.detection import synthetic_predictions
    from cases.detection.evaluator import CocoEvaluator

    began = time.perf_counter()
    document = synthetic_predictions.ground_truth(args.images)
    results = synthetic_predictions.predictions(document, args.detections)
    coco_gt = COCO()
    coco_gt.dataset = document
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    image_ids = [image["id"] for image in document["images"]]
    print(f"{args.images} images, {len(document['annotations'])} ground-truth boxes, {len(results)} detections "
          f"(made in {time.perf_counter() - began:.1f} s)", flush=True)

    seconds: dict[str, float] = {}
    stats: dict[str, list[float]] = {}
    for backend in ("faster_coco_eval", "pycocotools"):
        evaluator = CocoEvaluator(coco_gt, ["bbox"], backend)
        evaluator.add(image_ids, results)
        began = time.perf_counter()
        stats[backend] = evaluator.evaluate()["bbox"]
        seconds[backend] = time.perf_counter() - began
        print(f"{backend}: {seconds[backend]:.2f} s, AP {stats[backend][0]:.4f}", flush=True)
    difference = max(abs(a - b) for a, b in zip(stats["pycocotools"], stats["faster_coco_eval"], strict=True))
    equal = difference <= STATS_TOLERANCE
    print(f"stats: largest |difference| over the 12 = {difference:.2g} ({'equal' if equal else 'DIFFERENT'})",
          flush=True)
    details = {"images": args.images, "detections": len(results), "seconds": seconds,
               "max_stats_difference": difference, "stats_equal": equal}
    speedup = seconds["pycocotools"] / seconds["faster_coco_eval"]
    finish("eval faster_coco_eval/pycocotools speed", figure=speedup, unit="x", target=TARGET, details=details,
           json_path=args.json, verdict=None if equal else "MISSES: stats differ")


if __name__ == "__main__":
    main()
