"""The one training loop for every case: clock, precision, backward/step, evaluation cadence and stopping.

Modes:
    convergence  evaluate after every epoch; stop when every target is met or after `hp.epochs` epochs
                 (`eval.initial` adds an evaluation of the untrained model before training, inside init)
    smoke        like convergence without target stopping, usually capped by `train.max_steps`
    throughput   `train.warmup_steps` untimed steps, then `train.steps` timed steps; no evaluation

In a distributed job every rank runs this loop on its shard; evaluation results are shared by rank 0, so all
ranks stop at the same point. Hooks observe the loop (`before_train`, `after_step`, `after_eval`, `after_epoch`,
`after_train`) in list order; the trainer owns the clock, so hooks never affect what is timed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from suite import names
from suite.config import BenchConfig
from suite.engine.distributed import Collectives
from suite.engine.events import EventLog
from suite.engine.timing import PhaseClock
from suite.errors import NonFiniteLossError
from suite.vendors.base import VendorAdapter

logger = logging.getLogger(__name__)


class Workload(Protocol):
    """What a case provides to the trainer (cases.detection.case.DetectionCase implements it)."""

    def set_epoch(self, epoch: int) -> None: ...
    def to_device(self, batch: Any, device: torch.device) -> Any: ...
    def batch_images(self, batch: Any) -> int: ...
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...
    def evaluate(self, model: nn.Module, device: torch.device, pin_memory: bool, autocast: Any,
                 collectives: Collectives) -> dict[str, Any]: ...
    def targets_met(self, metrics: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class StepRecord:
    step: int
    epoch: int
    loss: float
    lr: float
    images: int
    core_s: float
    measured: bool


@dataclass
class EvalRecord:
    epoch: int
    step: int
    metrics: dict[str, Any]


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    converged: bool = False
    target_reached_at: float | None = None  # wall time of the evaluation that met every target
    initial_eval_s: float | None = None  # the untrained model's evaluation (eval.initial), inside init
    evals: list[EvalRecord] = field(default_factory=list)


class Hook:
    """Observer of the training loop; override the methods you need."""

    def before_train(self, trainer: Trainer) -> None: ...
    def after_step(self, trainer: Trainer, record: StepRecord) -> None: ...
    def after_eval(self, trainer: Trainer, record: EvalRecord) -> None: ...
    def after_epoch(self, trainer: Trainer, epoch: int) -> None: ...
    def after_train(self, trainer: Trainer) -> None: ...


class Trainer:
    def __init__(self, *, config: BenchConfig, workload: Workload, model: nn.Module,
                 optimizer: torch.optim.Optimizer, warmup: Any, lr_schedule: Any, loader: Any,
                 adapter: VendorAdapter, device: torch.device, events: EventLog, clock: PhaseClock,
                 collectives: Collectives, hooks: Sequence[Hook] = ()) -> None:
        self.config = config
        self.workload = workload
        self.model = model
        self.optimizer = optimizer
        self._epoch_images = self._epoch_steps = 0
        self.warmup = warmup
        self.lr_schedule = lr_schedule
        self.loader = loader
        self.adapter = adapter
        self.device = device
        self.events = events
        self.clock = clock
        self.collectives = collectives
        self.hooks = list(hooks)
        self.state = TrainState()
        self.precision = config.train.precision
        self.scaler = adapter.grad_scaler(device, self.precision)

    def _autocast(self) -> Any:
        return self.adapter.autocast(self.device, self.precision)

    @property
    def step_budget(self) -> int | None:
        """The run's total optimizer steps when capped (throughput mode, `train.max_steps`), else None."""
        settings = self.config.train
        if settings.mode == "throughput":
            return settings.warmup_steps + settings.steps
        return settings.max_steps

    def train(self) -> TrainState:
        settings = self.config.train
        throughput = settings.mode == "throughput"
        budget = self.step_budget
        self.model.train()
        for hook in self.hooks:
            hook.before_train(self)
        self.events.start(names.KEY_TRAIN)
        if not throughput or settings.warmup_steps == 0:
            self._start_measuring()
        while True:
            epoch = self.state.epoch + 1
            if not throughput and epoch > self.config.hp.epochs:
                break
            self.state.epoch = epoch
            self.workload.set_epoch(epoch)
            self.events.start(names.KEY_EPOCH, epoch_num=epoch)
            self._epoch_images = self._epoch_steps = 0
            budget_reached = self._train_epoch(epoch, budget)
            self.lr_schedule.step()
            self.events.end(names.KEY_EPOCH, epoch_num=epoch, images=self._epoch_images, steps=self._epoch_steps)
            for hook in self.hooks:
                hook.after_epoch(self, epoch)
            if not throughput:
                record = self._evaluate(epoch)
                if (settings.mode == "convergence" and self.workload.targets_met(record.metrics)):
                    self.state.converged = True
                    self.state.target_reached_at = time.time()
                    self.events.point(names.KEY_TARGET_REACHED, epoch_num=epoch)
                    if settings.stop_at_target:
                        break
            if budget_reached:
                break
        self.clock.stop()
        self.events.end(names.KEY_TRAIN, images=self.clock.images, steps=self.state.step)
        for hook in self.hooks:
            hook.after_train(self)
        return self.state

    def _start_measuring(self) -> None:
        self.clock.start()
        self.events.point(names.KEY_MEASURE_START, step=self.state.step)

    def _train_epoch(self, epoch: int, budget: int | None) -> bool:
        settings = self.config.train
        for batch in self.loader:
            batch = self.workload.to_device(batch, self.device)
            images = self.workload.batch_images(batch)
            with self.clock.window() as window:
                with self._autocast():
                    loss, _parts = self.workload.loss(self.model, batch)
                self._backward_step(loss)
                window.mark_host()
            self.state.step += 1
            self._epoch_images += images
            self._epoch_steps += 1
            measured = self.clock.started
            if measured:
                self.clock.add_step(images, window.seconds, window.host_seconds)
            lr = self.optimizer.param_groups[0]["lr"]
            self._step_warmup()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(self.state.step, loss_value)
            record = StepRecord(self.state.step, epoch, loss_value, lr, images, window.seconds, measured)
            for hook in self.hooks:
                hook.after_step(self, record)
            if not measured and self.state.step >= settings.warmup_steps:
                self._start_measuring()
            if budget is not None and self.state.step >= budget:
                return True
        return False

    def _step_warmup(self) -> None:
        """The warm-up is counted in optimizer steps, not epochs: it runs for its `total_iters` steps whatever the
        epoch boundaries (a throughput budget longer than a small epoch keeps ramping), then stays at its end."""
        warmup = self.warmup
        if warmup is None:
            return
        total = getattr(warmup, "total_iters", None)
        if total is None or warmup.last_epoch < total:
            warmup.step()

    def _backward_step(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def evaluate_untrained(self) -> EvalRecord:
        """The evaluation before training (`eval.initial`), recorded as epoch 0. It lies outside the measured
        phase (the clock has not started), inside init and e2e_time, where the published runs had it."""
        began = time.perf_counter()
        record = self._evaluate(0)
        self.state.initial_eval_s = time.perf_counter() - began
        return record

    def _evaluate(self, epoch: int) -> EvalRecord:
        self.events.start(names.KEY_EVAL, epoch_num=epoch)
        with self.clock.window() as window:
            metrics = self.workload.evaluate(self.model, self.device, self.adapter.pin_memory, self._autocast,
                                             self.collectives)
        self.clock.add_eval(window.seconds)
        accuracy = {k: v for k, v in metrics.items() if k in names.IOU_TYPE_METRIC.values()}
        self.events.end(names.KEY_EVAL, epoch_num=epoch, seconds=window.seconds)
        self.events.point(names.KEY_EVAL_ACCURACY, accuracy, epoch_num=epoch)
        logger.info("epoch %d eval: %s (%.1f s)", epoch,
                    ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()), window.seconds)
        record = EvalRecord(epoch, self.state.step, metrics)
        self.state.evals.append(record)
        for hook in self.hooks:
            hook.after_eval(self, record)
        return record
