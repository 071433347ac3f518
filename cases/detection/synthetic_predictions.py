"""Large synthetic COCO ground truth and detector-like predictions, without images, for evaluator benchmarks.

The ground truth has COCO's statistics in rough outline (varied image sizes, 1-15 objects of the 80 categories,
a few crowd regions, all three area ranges); the predictions are what a half-trained detector emits: most objects
found with jittered boxes and sometimes the wrong class, plus scored false positives, up to a fixed count per image.
Everything is drawn from one seed, so two calls with the same arguments give the same sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cases.detection.synthetic import COCO_CATEGORIES

IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375), (640, 640))


def ground_truth(images: int, seed: int = 0) -> dict[str, Any]:
    """A COCO instances document of `images` images (ids 1..N) with box-shaped polygon segmentations."""
    rng = np.random.default_rng(seed)
    category_ids = [c for c, _ in COCO_CATEGORIES]
    document: dict[str, Any] = {
        "info": {"description": "accelbench synthetic evaluation set"}, "licenses": [], "images": [],
        "annotations": [], "categories": [{"id": c, "name": n, "supercategory": "synthetic"}
                                          for c, n in COCO_CATEGORIES]}
    ann_id = 0
    for image_id in range(1, images + 1):
        width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        document["images"].append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": width,
                                   "height": height})
        for _ in range(int(rng.integers(1, 16))):
            # Log-uniform sides give small, medium and large objects in COCO's proportions, roughly.
            w, h = np.exp(rng.uniform(np.log(8), np.log(min(width, height) * 0.9), size=2))
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            ann_id += 1
            document["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": int(rng.choice(category_ids)),
                "bbox": [round(float(v), 2) for v in (x, y, w, h)], "area": round(float(w * h), 2),
                "iscrowd": int(rng.random() < 0.01),
                "segmentation": [[round(float(v), 2) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]]})
    return document


def predictions(document: dict[str, Any], per_image: int = 100, seed: int = 1) -> list[dict[str, Any]]:
    """Bbox results (COCO result format) for every image of `document`: `per_image` detections each."""
    rng = np.random.default_rng(seed)
    category_ids = [c["id"] for c in document["categories"]]
    by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in document["images"]}
    for ann in document["annotations"]:
        by_image[ann["image_id"]].append(ann)
    sizes = {image["id"]: (image["width"], image["height"]) for image in document["images"]}
    results: list[dict[str, Any]] = []
    for image_id, anns in by_image.items():
        width, height = sizes[image_id]
        found: list[dict[str, Any]] = []
        for ann in anns:
            if rng.random() > 0.8:
                continue  # missed
            x, y, w, h = ann["bbox"]
            dx, dy = rng.normal(0, 0.08, size=2) * (w, h)
            sw, sh = np.exp(rng.normal(0, 0.1, size=2))
            category = ann["category_id"] if rng.random() < 0.9 else int(rng.choice(category_ids))
            found.append(_result(image_id, category, (x + dx, y + dy, w * sw, h * sh), rng.uniform(0.3, 1.0),
                                 width, height))
        while len(found) < per_image:
            w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
            box = (rng.uniform(0, width - w), rng.uniform(0, height - h), w, h)
            found.append(_result(image_id, int(rng.choice(category_ids)), box, rng.uniform(0.05, 0.6), width,
                                 height))
        results.extend(found[:per_image])
    return results


def _result(image_id: int, category_id: int, box: tuple[float, ...], score: float, width: int, height: int
            ) -> dict[str, Any]:
    x, y, w, h = (float(v) for v in box)
    x, y = max(0.0, x), max(0.0, y)
    w, h = max(1.0, min(w, width - x)), max(1.0, min(h, height - y))
    return {"image_id": image_id, "category_id": category_id, "bbox": [round(v, 2) for v in (x, y, w, h)],
            "score": round(float(score), 4)}
