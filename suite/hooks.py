"""Observers of the training loop: per-step and per-epoch metrics to the tracker, and progress log lines."""

from __future__ import annotations

import logging

from suite import names
from suite.tracking import Tracker
from suite.trainer import EvalRecord, Hook, StepRecord, Trainer

logger = logging.getLogger(__name__)


def _due(step: int, every: int) -> bool:
    """The first step, then every `every` steps: the first step shows start-up cost, the rest the trend."""
    return step == 1 or step % every == 0

class TrackingHook(Hook):
    """Per-step loss/lr/throughput every `log_every` steps and the per-epoch mAP curve (step = epoch)."""

    def __init__(self, tracker: Tracker, log_every: int) -> None:
        self.tracker = tracker
        self.log_every = log_every

    def after_step(self, trainer: Trainer, record: StepRecord) -> None:
        if _due(record.step, self.log_every):
            metrics = {names.LOSS: record.loss, names.LR: record.lr}
            if record.core_s > 0:
                metrics[names.STEP_THROUGHPUT] = record.images / record.core_s
            self.tracker.log_metrics(metrics, step=record.step)

    def after_eval(self, trainer: Trainer, record: EvalRecord) -> None:
        values = {k: v for k, v in record.metrics.items() if k in names.IOU_TYPE_METRIC.values()}
        self.tracker.log_metrics(values, step=record.epoch)


class ProgressHook(Hook):
    """A log line every `log_every` steps with the loss, lr and the step's compute throughput."""

    def __init__(self, log_every: int) -> None:
        self.log_every = log_every

    def after_step(self, trainer: Trainer, record: StepRecord) -> None:
        if _due(record.step, self.log_every):
            logger.info("epoch %d step %d loss %.4f lr %.5f %.1f img/s (core)%s", record.epoch, record.step,
                        record.loss, record.lr, record.images / record.core_s if record.core_s else 0.0,
                        "" if record.measured else " [warm-up]")
