"""Observers of the training loop: per-step and per-epoch metrics to the tracker, and each epoch's progress."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from suite import names
from suite.engine.trainer import EvalRecord, Hook, StepRecord, Trainer
from suite.progress import Progress

if TYPE_CHECKING:
    from suite.tracking.tracker import Tracker

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
            with trainer.clock.excluded():  # a slow tracking server must not slow the measured training
                self.tracker.log_metrics(metrics, step=record.step)

    def after_eval(self, trainer: Trainer, record: EvalRecord) -> None:
        values = {k: v for k, v in record.metrics.items() if k in names.IOU_TYPE_METRIC.values()}
        with trainer.clock.excluded():
            self.tracker.log_metrics(values, step=record.epoch)


class ProgressHook(Hook):
    """Each epoch's progress (steps, rate, ETA, loss, lr, the step's compute throughput): a live bar on a terminal,
    a plain line every `log_every` steps (and every few seconds) elsewhere. See suite.progress."""

    def __init__(self, log_every: int) -> None:
        self.log_every = log_every
        self.progress: Progress | None = None

    def after_step(self, trainer: Trainer, record: StepRecord) -> None:
        if self.progress is None:
            self.progress = Progress(f"epoch {record.epoch}", self._planned_steps(trainer, record.step - 1),
                                     unit="steps")
        throughput = record.images / record.core_s if record.core_s else 0.0
        note = f"loss {record.loss:.4f}, lr {record.lr:.5f}, {throughput:.1f} img/s (core)" \
            + ("" if record.measured else " [warm-up]")
        self.progress.update(1, note, line=_due(record.step, self.log_every))

    @staticmethod
    def _planned_steps(trainer: Trainer, steps_before: int) -> int | None:
        try:
            planned = len(trainer.loader)
        except TypeError:  # an iterable without a length
            return None
        budget = trainer.step_budget
        return planned if budget is None else max(1, min(planned, budget - steps_before))

    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        self.close()

    def after_train(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
