"""Synthetic COCO2017-layout datasets of simple coloured shapes that a detector can actually learn.

Each image is a noisy grey background with 1-3 non-overlapping shapes; the shape decides the category (rectangle,
ellipse, triangle, each a real COCO category id) and has a typical colour, so that a small model learns it in
minutes on a CPU. Annotations carry boxes and polygon segmentations, with all 80 real COCO categories listed.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from suite.cache import cache_dir
from suite.errors import DataError
from suite.progress import Progress

logger = logging.getLogger(__name__)

# The 80 COCO categories with their real ids (1..90 with gaps), as in instances_*2017.json.
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
# shape -> (COCO category id, base RGB colour)
SHAPES: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rectangle": (72, (200, 40, 40)),     # tv
    "ellipse": (37, (40, 180, 60)),       # sports ball
    "triangle": (38, (50, 70, 210)),      # kite
}
ELLIPSE_POINTS = 24
COMPLETE_MARKER = ".complete"
VAL_ID_OFFSET = 1_000_000  # COCO image ids are unique across splits


@dataclass(frozen=True)
class SyntheticSpec:
    train: int
    val: int
    width: int
    height: int
    seed: int = 0

    def key(self) -> str:
        text = json.dumps(self.__dict__, sort_keys=True) + "|v1"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shape_polygon(shape: str, x0: float, y0: float, w: float, h: float, rng: np.random.Generator) -> list[float]:
    if shape == "rectangle":
        points = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    elif shape == "triangle":
        apex = x0 + w * rng.uniform(0.2, 0.8)
        points = [(apex, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    else:
        angles = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
        cx, cy = x0 + w / 2, y0 + h / 2
        points = [(cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a)) for a in angles]
    return [round(float(c), 2) for point in points for c in point]


def _polygon_area(flat: list[float]) -> float:
    xs, ys = np.array(flat[0::2]), np.array(flat[1::2])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def _overlaps(box: tuple[float, float, float, float], boxes: list[tuple[float, float, float, float]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in boxes)


def _make_image(image_id: int, spec: SyntheticSpec, rng: np.random.Generator, next_ann_id: Callable[[], int]
                ) -> tuple[Image.Image, list[dict[str, Any]]]:
    w, h = spec.width, spec.height
    background = rng.normal(128, 20, size=(h, w, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    side = min(w, h)
    placed: list[tuple[float, float, float, float]] = []
    annotations = []
    for _ in range(int(rng.integers(1, 4))):
        shape = str(rng.choice(list(SHAPES)))
        category_id, colour = SHAPES[shape]
        for _attempt in range(20):
            bw, bh = rng.uniform(side / 6, side / 2, size=2)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = (x0, y0, x0 + bw, y0 + bh)
            if not _overlaps(box, placed):
                break
        else:
            continue
        placed.append(box)
        polygon = _shape_polygon(shape, x0, y0, bw, bh, rng)
        jitter = rng.integers(-25, 26, size=3)
        fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter, strict=False))
        draw.polygon(list(zip(polygon[0::2], polygon[1::2], strict=False)), fill=fill)
        xs, ys = polygon[0::2], polygon[1::2]
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        annotations.append({
            "id": next_ann_id(), "image_id": image_id, "category_id": category_id, "iscrowd": 0,
            "bbox": [round(v, 2) for v in bbox], "area": round(_polygon_area(polygon), 2),
            "segmentation": [polygon],
        })
    return image, annotations


def write_dataset(out: Path, spec: SyntheticSpec) -> Path:
    """Write `out/{train2017,val2017}/*.jpg` and `out/annotations/instances_{train,val}2017.json`."""
    rng = np.random.default_rng(spec.seed)
    ann_counter = iter(range(1, 10**9))
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count, id_offset in (("train", spec.train, 0), ("val", spec.val, VAL_ID_OFFSET)):
        image_dir = out / f"{split}2017"
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        with Progress(f"generating synthetic {split}2017", count, unit="images") as progress:
            for index in range(count):
                image_id = id_offset + index + 1
                file_name = f"{image_id:012d}.jpg"
                image, anns = _make_image(image_id, spec, rng, lambda: next(ann_counter))
                image.save(image_dir / file_name, quality=92)
                images.append({"id": image_id, "file_name": file_name, "width": spec.width, "height": spec.height})
                annotations.extend(anns)
                progress.update(1)
        document = {
            "info": {"description": "accelbench synthetic shapes", "version": "1", "spec": spec.__dict__},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "synthetic"} for i, n in COCO_CATEGORIES],
        }
        (out / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(document))
    return out


def default_cache_root() -> Path:
    return cache_dir("synthetic")


def ensure_dataset(spec: SyntheticSpec, cache_root: Path | None = None) -> Path:
    """Return a cached synthetic dataset for `spec`, generating it (atomically) on first use.

    A cache that cannot be written (read-only home, full disk) costs speed only, as for the annotation index: the
    dataset is generated into a temporary folder of this process instead (removed when it exits), with a warning.
    """
    cache = cache_root or default_cache_root()
    try:
        return _cached_dataset(spec, cache)
    except OSError as error:
        logger.warning("synthetic dataset cache %s is not writable (%s): generating it in a temporary folder for "
                       "this process", cache, error.strerror or error)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f"accelbench-synthetic-{spec.key()}-"))
        atexit.register(shutil.rmtree, staging, ignore_errors=True)
        write_dataset(staging, spec)
    except OSError as error:
        raise DataError(f"cannot generate the synthetic dataset: neither {cache} nor the temporary folder "
                        f"{tempfile.gettempdir()} is writable ({error.strerror or error})") from None
    return staging


def _cached_dataset(spec: SyntheticSpec, cache: Path) -> Path:
    root = cache / spec.key()
    if (root / COMPLETE_MARKER).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.key()}-", dir=root.parent))
    try:
        write_dataset(staging, spec)
        (staging / COMPLETE_MARKER).write_text(json.dumps(spec.__dict__))
        try:
            staging.rename(root)
        except OSError:
            # Another process finished the same dataset first; theirs is identical.
            if not (root / COMPLETE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
