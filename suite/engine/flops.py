"""Model FLOP utilisation: training FLOPs per image, counted once with PyTorch's FLOP counter and cached.

    mfu = p_core x training FLOPs per image / (world size x peak dense FLOP/s of one device at the run's precision)

The FLOPs are those of one forward+backward pass over the first `bs` training images at the run's input size, counted
by `torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions) on a model made for the count (the case's
reference model: the run's graph with values from a fixed seed), so training itself is untouched. Detection models
do data-dependent work (proposals, sampled RoIs), so the count is a property of that batch; it is cached under
ACCELBENCH_CACHE/flops/, keyed by everything that changes it. The peak comes from the vendor's
`accelerator.peak_tflops` (dense, per device, per precision); where it is unknown there is no MFU, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from suite.cache import cache_dir

logger = logging.getLogger(__name__)


def count_training_flops(model: torch.nn.Module, batch: Any, loss: Callable[[torch.nn.Module, Any], Any]) -> int:
    """FLOPs of one forward+backward of `model` on `batch`. The model is one made for the count, never the run's:
    the step leaves gradients (and trainable statistics) on it."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        value, _ = loss(model, batch)
        value.backward()
    return int(counter.get_total_flops())


def flops_per_image(key: Mapping[str, Any], images: int, compute: Callable[[], int]) -> tuple[float, bool]:
    """(training FLOPs per image, whether it came from the cache) for the settings in `key`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir("flops") / f"{digest}.json"
    if path.is_file():
        try:
            return float(json.loads(path.read_text())["flops_per_image"]), True
        except (ValueError, KeyError, OSError):
            logger.warning("ignoring unreadable FLOP cache %s", path)
    value = compute() / images
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"flops_per_image": value, "key": key}, default=str))
    temporary.replace(path)  # atomic: concurrent runs never read half a file
    return value, False


def mfu(p_core: float, flops: float, peak_tflops: float, world_size: int) -> float:
    return p_core * flops / (world_size * peak_tflops * 1e12)
