"""What the annotation index costs at COCO train2017 size, against the pycocotools index each rank used to build.

Generates (seeded, about a minute, cached in the temp folder between runs) an annotation file the size of
instances_train2017.json: 118,287 images, 860,044 annotations with ~24-point polygons and 1% crowd RLE (~470 MB).
Then, each in a fresh process so memory figures are its own:

- today's path: parse, check and index with pycocotools, with the dataset module as it was before the shared index
  (`--today-rev`, read from git), what every rank did
- cold: the shared index with an empty cache (parse, check, write the arrays)
- warm: the shared index already cached (what the other ranks and later runs do)

and, for both today's path and the warm index, a forked DataLoader-style worker that converts N images' targets
(boxes; no JPEG is read) and reports the growth of its private memory (copy-on-read of the parent's pages).

    .venv/bin/python benchmarks/data_index.py               # full size
    .venv/bin/python benchmarks/data_index.py --images 5000 # quicker, smaller file
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, finish

COCO_TRAIN_IMAGES, COCO_TRAIN_ANNOTATIONS = 118_287, 860_044
TARGET_WARM_S, TARGET_RSS_MIB, TARGET_WORKER_MIB = 3.0, 400.0, 50.0
TODAY_REV = "cd09210"  # the last commit before the shared index


# --- the annotation file ------------------------------------------------------------------------------------------
def generate(path: Path, images: int, annotations: int, *, points: int = 24, crowd: float = 0.01,
             seed: int = 0) -> None:
    """Write a COCO-format annotation file of the given size, streamed (never held whole in memory)."""
    rng = random.Random(seed)
    per_image = [0] * images
    for _ in range(annotations):
        per_image[rng.randrange(images)] += 1
    with path.open("w", encoding="utf-8") as out:
        out.write('{"info": {"description": "data_index benchmark"}, "licenses": [], "images": [')
        sizes = []
        for i in range(images):
            width, height = rng.choice(((640, 480), (480, 640), (640, 427), (500, 375)))
            sizes.append([height, width])  # an RLE's size is its image's [height, width]
            out.write(("," if i else "") + json.dumps({"id": i + 1, "file_name": f"{i + 1:012d}.jpg",
                                                         "width": width, "height": height}))
        out.write('], "categories": [' + ",".join(json.dumps({"id": c, "name": f"c{c}", "supercategory": "s"})
                                                   for c in range(1, 91)) + '], "annotations": [')
        ann_id = 0
        for i, count in enumerate(per_image):
            for _ in range(count):
                x, y = rng.uniform(0, 500), rng.uniform(0, 350)
                w, h = rng.uniform(2, 140), rng.uniform(2, 130)
                ann: dict[str, Any] = {"id": ann_id + 1, "image_id": i + 1, "category_id": rng.randint(1, 90),
                                       "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                                       "area": round(w * h * 0.7, 2), "iscrowd": 0}
                if rng.random() < crowd:
                    runs = [rng.randint(1, 400) for _ in range(rng.randint(40, 160))]
                    ann.update(iscrowd=1, segmentation={"size": sizes[i], "counts": runs})
                else:
                    ann["segmentation"] = [[round(v, 2) for _ in range(points)
                                            for v in (x + rng.uniform(0, w), y + rng.uniform(0, h))]]
                out.write(("," if ann_id else "") + json.dumps(ann, separators=(",", ":")))
                ann_id += 1
        out.write("]}")


# --- measuring one process --------------------------------------------------------------------------------------
def _memory_kib(field: str, source: str = "/proc/self/status") -> int:
    for line in Path(source).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _private_kib() -> int:
    rollup = Path("/proc/self/smaps_rollup")
    return _memory_kib("Private_Clean", str(rollup)) + _memory_kib("Private_Dirty", str(rollup))


def _old_targets(coco: Any, image_ids: list[int], sink: Any) -> None:
    """Today's `convert_target` (boxes), reading pycocotools' per-image annotation dicts."""
    import torch

    start = _private_kib()
    for image_id in image_ids:
        info = coco.imgs[image_id]
        anns = [a for a in coco.imgToAnns[image_id] if a.get("iscrowd", 0) == 0]
        boxes = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(min=0, max=info["width"])
        torch.as_tensor([a["category_id"] for a in anns], dtype=torch.int64)
    sink.send((_private_kib() - start) / 1024)


def _new_targets(dataset: Any, rows: list[int], sink: Any) -> None:
    start = _private_kib()
    arrays = dataset.index.arrays
    for row in rows:
        dataset.convert_target(row, int(arrays["height"][row]), int(arrays["width"][row]))
    sink.send((_private_kib() - start) / 1024)


def _worker_growth(target: Any, state: Any, items: list[int]) -> float:
    """Private-memory growth (MiB) of a forked worker converting `items`, as a DataLoader worker would."""
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    worker = multiprocessing.get_context("fork").Process(target=target, args=(state, items, send))
    worker.start()
    growth = receive.recv()
    worker.join()
    return growth


def _module_from(source: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("today_data", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(path: str, mode: str, worker_items: int, today_source: str | None) -> dict[str, float]:
    """One mode in this process: seconds to index, RSS added (MiB), peak RSS added, a worker's growth."""
    import numpy  # noqa: F401 -- imported before the baseline, like torch: a rank holds them anyway
    import torch  # noqa: F401

    from cases.detection.data import CocoDetection, load_coco

    annotation_file = Path(path)
    if mode == "today" and today_source:
        load_coco = _module_from(Path(today_source)).load_coco  # noqa: F811 -- the code as it was
    before, started = _memory_kib("VmRSS"), time.perf_counter()
    if mode == "today":
        coco = load_coco(annotation_file)
        seconds = time.perf_counter() - started
        items: list[int] = sorted(coco.imgs)[:worker_items]
        state: Any = coco
        target: Any = _old_targets
    else:
        root = annotation_file.parents[1]
        dataset = CocoDetection(root, "train", with_masks=False)
        seconds = time.perf_counter() - started
        items = list(range(min(worker_items, len(dataset))))
        state, target = dataset, _new_targets
    rss = (_memory_kib("VmRSS") - before) / 1024
    peak = (_memory_kib("VmHWM") - before) / 1024
    growth = _worker_growth(target, state, items) if worker_items else 0.0
    return {"seconds": seconds, "rss_mib": rss, "peak_rss_mib": peak, "worker_growth_mib": growth,
            "worker_items": len(items)}


def in_fresh_process(path: Path, mode: str, cache: Path, worker_items: int, today_source: Path | None
                     ) -> dict[str, float]:
    environment = {**os.environ, "ACCELBENCH_CACHE": str(cache), "ACCELBENCH_PROGRESS": "0"}
    command = [sys.executable, __file__, "--measure", mode, "--file", str(path), "--worker-images",
               str(worker_items), *(["--today-source", str(today_source)] if today_source else [])]
    done = subprocess.run(command, env=environment, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"data_index: the {mode} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=COCO_TRAIN_IMAGES)
    parser.add_argument("--annotations", type=int, default=None,
                        help="default: COCO's annotations per image times --images")
    parser.add_argument("--worker-images", type=int, default=20_000, help="images a worker converts")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "accelbench-data-index",
                        help="where the generated file is kept between runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--today-rev", default=TODAY_REV,
                        help="the git revision whose cases/detection/data.py is today's path")
    parser.add_argument("--measure", choices=("today", "cold", "warm"), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--today-source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.file, args.measure, args.worker_images, args.today_source)))
        return

    annotations = args.annotations or round(args.images * COCO_TRAIN_ANNOTATIONS / COCO_TRAIN_IMAGES)
    folder = args.workdir / f"{args.images}-{annotations}"
    path = folder / "annotations" / "instances_train2017.json"
    if not path.is_file():
        (folder / "annotations").mkdir(parents=True, exist_ok=True)
        (folder / "train2017").mkdir(exist_ok=True)
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        generate(partial, args.images, annotations)
        partial.replace(path)
        print(f"generated {path} in {time.perf_counter() - started:.0f} s", flush=True)
    size_mib = path.stat().st_size / 2**20
    print(f"{path}: {args.images:,} images, {annotations:,} annotations, {size_mib:.0f} MiB", flush=True)

    today_source = folder / f"data-{args.today_rev}.py"
    shown = subprocess.run(["git", "show", f"{args.today_rev}:cases/detection/data.py"], cwd=REPO,
                           capture_output=True, text=True, check=False)
    if shown.returncode == 0:
        today_source.write_text(shown.stdout, encoding="utf-8")
    else:  # not a git checkout: today's path is then the evaluator's pycocotools loader as it is now
        print(f"note: no {args.today_rev} in git; timing the current load_coco as today's path", flush=True)
        today_source = None
    with tempfile.TemporaryDirectory(prefix="accelbench-index-cache-") as cache:
        today = in_fresh_process(path, "today", Path(cache), args.worker_images, today_source)
        cold = in_fresh_process(path, "cold", Path(cache), 0, None)
        warm = in_fresh_process(path, "warm", Path(cache), args.worker_images, None)
    for name, figures in (("today (pycocotools per rank)", today), ("index, cold cache", cold),
                          ("index, warm cache", warm)):
        worker = (f", worker +{figures['worker_growth_mib']:.0f} MiB over {figures['worker_items']:,} images"
                  if figures["worker_items"] else "")
        print(f"{name}: {figures['seconds']:.1f} s, RSS +{figures['rss_mib']:.0f} MiB "
              f"(peak +{figures['peak_rss_mib']:.0f} MiB){worker}", flush=True)

    details = {"images": args.images, "annotations": annotations, "file_mib": round(size_mib, 1),
               "today_rev": args.today_rev if today_source else None, "today": today, "cold": cold, "warm": warm}
    finish("data index cold/today time", figure=cold["seconds"] / today["seconds"], unit="x", target=1.0,
           higher_is_better=False, details=details, json_path=args.json)
    finish("data index rank RSS (warm)", figure=warm["rss_mib"], unit=" MiB", target=TARGET_RSS_MIB,
           higher_is_better=False, details=details, json_path=args.json)
    finish("data index worker growth", figure=warm["worker_growth_mib"], unit=" MiB", target=TARGET_WORKER_MIB,
           higher_is_better=False, details=details, json_path=args.json)
    finish("data index warm time", figure=warm["seconds"], unit=" s", target=TARGET_WARM_S, higher_is_better=False,
           details=details, json_path=args.json)


if __name__ == "__main__":
    main()
