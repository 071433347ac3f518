"""Can data loading keep up? The training loader alone (JPEG from disk -> device) against the model's p_core.

First the case's own training loader, as a run builds it (workers, pinned memory and persistent workers from the
config and the vendor), is drained for a number of batches with each batch copied to the device and converted to
float: images/s of data loading alone. Then a real throughput-mode suite run on the same data gives p_core (compute
only) and p_train (compute plus loading as it overlaps in training). Prints the loader's headroom over p_core, then
p_train / p_core last. Target on the GPU machine (16 cores, faster_rcnn bs 16): >= 0.9.

    .venv/bin/python benchmarks/data_pipeline.py --quick                               # CPU, about a minute
    python benchmarks/data_pipeline.py --vendor nvidia_h100 --set hp.bs=16 --set data.workers=8
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import add_run_arguments, finish, private_store, resolve_throughput, suite_run

TARGET = 0.9
# COCO-sized JPEGs (640x480) read from disk, as the published runs read COCO.
DATA = ["data.synthetic.width=640", "data.synthetic.height=480", "data.synthetic.train=256"]
QUICK = ["model.backbone=mobilenet_v3_large", "model.min_size=320", "model.max_size=320",
         "model.detector_kwargs={rpn_pre_nms_top_n_train: 300, rpn_post_nms_top_n_train: 300, "
         "box_batch_size_per_image: 32}", "hp.bs=2", "data.synthetic.train=64", "data.workers=1"]


def loader_rate(resolved: Any, batches: int) -> tuple[float, int]:
    """Images/s of the case's training loader, each batch moved to the device; and the images counted."""
    from suite.engine.distributed import DistContext
    from suite.launch.checks import prepare

    prepared = prepare(resolved, synthetic=True)
    adapter, case = prepared.adapter, prepared.case
    device = adapter.device(0)
    loader = case.train_loader(adapter.pin_memory, DistContext())
    images = 0
    began = None
    seen = 0
    while seen <= batches:
        for batch in loader:
            if seen == 0:  # the first batch pays for starting the workers
                adapter.synchronize(device)
                began = time.perf_counter()
            else:
                moved = case.to_device(batch, device)
                images += case.batch_images(moved)
            seen += 1
            if seen > batches:
                break
    adapter.synchronize(device)
    assert began is not None
    return images / (time.perf_counter() - began), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--batches", type=int, default=40, help="batches drained from the loader alone")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the suite run")
    parser.add_argument("--quick", action="store_true", help="small CPU settings: " + " ".join(QUICK))
    args = parser.parse_args()
    private_store()
    overrides = [*DATA, *(QUICK if args.quick else []), f"train.steps={args.steps}", *args.overrides]
    resolved = resolve_throughput(args.case, args.vendor, overrides)
    config = resolved.config
    rate, images = loader_rate(resolved, args.batches)
    print(f"loader alone: {rate:.1f} img/s over {images} images ({config.data.workers} workers, bs {config.hp.bs}, "
          f"{config.data.synthetic.width}x{config.data.synthetic.height} JPEG)", flush=True)
    metrics = suite_run(resolved)
    p_core, p_train = metrics["p_core"], metrics["p_train"]
    print(f"model: p_core {p_core:.2f} img/s, p_train {p_train:.2f} img/s; loader headroom {rate / p_core:.1f}x "
          "p_core", flush=True)
    details = {"case": args.case, "vendor": args.vendor, "bs": config.hp.bs, "workers": config.data.workers,
               "loader_img_s": rate, "p_core": p_core, "p_train": p_train, "loader_over_p_core": rate / p_core,
               "precision": config.train.precision}
    import torch

    # The target is for a GPU fed by spare cores; on a CPU the loader's workers take cores from the model itself.
    finish("data pipeline p_train/p_core", figure=p_train / p_core, unit="",
           target=TARGET if torch.cuda.is_available() else None, details=details, json_path=args.json)


if __name__ == "__main__":
    main()
