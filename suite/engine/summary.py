"""A run's summary metrics, reduced across ranks: images summed, phase times and memory the maximum over ranks,
device telemetry combined (peak memory the job's peak, power and energy added up over devices).

`RunMeasurements` holds what one rank measured. `summary_metrics` is collective (every rank calls it) unless given
the collectives of a lone process, as on a failure path where the other ranks may be gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suite import names
from suite.engine.distributed import Collectives
from suite.engine.telemetry import Sampler
from suite.engine.timing import PhaseClock, PhaseTimes
from suite.engine.trainer import TrainState
from suite.vendors.base import VendorAdapter


@dataclass
class RunMeasurements:
    """What this rank has measured so far (any part may be missing when a run fails early)."""

    started_at: float                       # the run's start (e2e_time counts from here)
    train_started_at: float | None = None   # the end of init (init_time)
    # Seconds so far in calls to a tracking server that failed (one that is down, or never answers): the suite's
    # stall, not the benchmark's, so it is taken out of init_time and e2e_time (the measured phase already leaves
    # every tracking call out) and recorded beside them as tracking_stall_time.
    tracking_stall_s: Callable[[], float] = lambda: 0.0
    init_stall_s: float = 0.0               # tracking_stall_s() when init ended
    clock: PhaseClock | None = None
    state: TrainState | None = None
    adapter: VendorAdapter | None = None
    device: Any = None
    telemetry: Sampler | None = None


def summary_metrics(measured: RunMeasurements, collectives: Collectives, events: Any = None) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if measured.clock is not None:
        ranks = collectives.gather_objects(measured.clock.times())
        metrics.update(PhaseTimes.combined(ranks).metrics())
    if measured.state is not None:
        metrics.update(_training(measured.state))
    if measured.device is not None and measured.adapter is not None:
        metrics.update(_memory(measured.adapter.memory_gib(measured.device), collectives, events))
        metrics.update(_telemetry(measured.telemetry, collectives, metrics.get(names.IMAGES)))
    if measured.train_started_at is not None:
        metrics[names.INIT_TIME] = measured.train_started_at - measured.started_at - measured.init_stall_s
        if metrics.get(names.IMAGES) and metrics.get(names.TRAIN_TIME):
            # The published Mask R-CNN pages' p_whole: their clock starts before the dataset is built.
            metrics[names.P_WHOLE_WITH_INIT] = metrics[names.IMAGES] / (metrics[names.INIT_TIME]
                                                                         + metrics[names.TRAIN_TIME])
    metrics[names.E2E_TIME] = time.time() - measured.started_at - measured.tracking_stall_s()
    return metrics


def _training(state: TrainState) -> dict[str, float]:
    metrics = {names.STEPS: float(state.step), names.EPOCHS_RUN: float(state.epoch)}
    if state.initial_eval_s is not None:
        metrics[names.INIT_EVAL_TIME] = state.initial_eval_s
    for iou_type, metric in names.IOU_TYPE_METRIC.items():
        values = [r.metrics[metric] for r in state.evals if metric in r.metrics]
        if values:
            metrics[names.IOU_TYPE_BEST_METRIC[iou_type]] = max(values)
    return metrics


def _memory(memory: dict[str, float], collectives: Collectives, events: Any) -> dict[str, float]:
    per_rank = collectives.gather_objects(memory)
    if events is not None:
        events.point(names.KEY_MEM_PER_RANK, per_rank)
    return {key: max(m.get(key, 0.0) for m in per_rank) for key in memory}


COMBINE = {names.MEM_SMI: max, names.DEVICE_POWER_MEAN_W: sum, names.DEVICE_ENERGY_J: sum,
           names.DEVICE_TEMPERATURE_MAX_C: max}


def _telemetry(telemetry: Sampler | None, collectives: Collectives, images: float | None) -> dict[str, float]:
    summaries = [s for s in collectives.gather_objects(telemetry.summary() if telemetry else {}) if s]
    metrics: dict[str, float] = {}
    if not summaries:
        return metrics
    for key, combine in COMBINE.items():
        values = [s[key] for s in summaries if key in s]
        if values:
            metrics[key] = combine(values)
    utilization = [s[names.DEVICE_UTILIZATION_MEAN] for s in summaries if names.DEVICE_UTILIZATION_MEAN in s]
    if utilization:
        metrics[names.DEVICE_UTILIZATION_MEAN] = sum(utilization) / len(utilization)
    # Energy per image needs every device's counter: one device without one leaves it missing.
    measured = [s.get(names.ENERGY_J) for s in summaries]
    if len(summaries) == collectives.context.world_size and None not in measured and images:
        metrics[names.ENERGY_J] = sum(measured)
        metrics[names.ENERGY_PER_IMAGE] = metrics[names.ENERGY_J] / images
    return metrics
