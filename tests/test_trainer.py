"""The trainer's modes, stopping rules and failure on a non-finite loss, with a toy workload on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from suite import config, names, registry
from suite.engine.distributed import Collectives, DistContext
from suite.engine.events import EventLog, read_events
from suite.engine.hooks import TrackingHook
from suite.engine.timing import PhaseClock
from suite.engine.trainer import Trainer
from suite.errors import NonFiniteLossError
from suite.tracking.tracker import MemoryTracker
from suite.vendors.cpu import CpuAdapter


class ToyWorkload:
    """Linear regression batches of 3 samples; 'mAP' rises by 0.1 per evaluation."""

    def __init__(self, poison_step: int | None = None) -> None:
        self.poison_step = poison_step
        self.steps = 0
        self.evals = 0
        self.output_dtypes: set[torch.dtype] = set()

    def set_epoch(self, epoch: int) -> None:
        return None

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch

    def batch_images(self, batch: Any) -> int:
        return len(batch[0])

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.steps += 1
        inputs, targets = batch
        outputs = model(inputs)
        self.output_dtypes.add(outputs.dtype)
        loss = nn.functional.mse_loss(outputs.float(), targets)
        if self.steps == self.poison_step:
            loss = loss * float("nan")
        return loss, {"mse": loss}

    def evaluate(self, model: nn.Module, device: torch.device, pin_memory: bool, autocast: Any,
                 collectives: Collectives) -> dict[str, Any]:
        self.evals += 1
        return {names.MAP: 0.1 * self.evals}

    def targets_met(self, metrics: dict[str, Any]) -> bool:
        return metrics[names.MAP] >= 0.25


def _trainer(tmp_path: Path, workload: ToyWorkload, overrides: list[str], batches: int = 4,
             case_schedulers: bool = False):
    resolved = config.resolve("faster_rcnn", "cpu", "1x1", overrides)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    warmup, schedule = None, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[100])
    if case_schedulers:  # the detection recipe's own warm-up and step schedule
        warmup, schedule = registry.case_class("faster_rcnn")(resolved.config).schedulers(optimizer, batches)
    loader = [(torch.randn(3, 2), torch.randn(3, 1)) for _ in range(batches)]
    adapter = CpuAdapter()
    events = EventLog(tmp_path / "events.jsonl")
    tracker = MemoryTracker()
    trainer = Trainer(config=resolved.config, workload=workload, model=model, optimizer=optimizer, warmup=warmup,
                      lr_schedule=schedule, loader=loader, adapter=adapter, device=torch.device("cpu"),
                      events=events, clock=PhaseClock(lambda: None),
                      collectives=Collectives(DistContext(), torch.device("cpu")), hooks=[TrackingHook(tracker, 1)])
    return trainer, tracker, events


def test_convergence_stops_when_targets_are_met(tmp_path: Path) -> None:
    workload = ToyWorkload()
    trainer, tracker, events = _trainer(tmp_path, workload, ["train.mode=convergence", "train.max_steps=null",
                                                             "hp.epochs=10"])
    state = trainer.train()
    events.close()
    assert state.converged and state.epoch == 3 and state.step == 12
    assert [step for step, _ in tracker.metrics[names.MAP]] == [1, 2, 3]   # the per-epoch curve, step = epoch
    assert [step for step, _ in tracker.metrics[names.LOSS]] == list(range(1, 13))
    assert trainer.clock.images == 36
    keys = [(e["event_type"], e["key"]) for e in read_events(events.path)]
    assert keys.count(("INTERVAL_END", "eval")) == 3 and keys.count(("POINT_IN_TIME", "eval_accuracy")) == 3


def test_smoke_stops_at_step_budget_and_still_evaluates(tmp_path: Path) -> None:
    workload = ToyWorkload()
    trainer, _, _ = _trainer(tmp_path, workload, ["train.mode=smoke", "train.max_steps=6", "hp.epochs=5"])
    state = trainer.train()
    assert (state.step, state.epoch, workload.evals, state.converged) == (6, 2, 2, False)


def test_throughput_counts_only_timed_steps(tmp_path: Path) -> None:
    workload = ToyWorkload()
    trainer, _, _ = _trainer(tmp_path, workload, ["train.mode=throughput", "train.warmup_steps=3",
                                                  "train.steps=7"])
    state = trainer.train()
    metrics = trainer.clock.metrics()
    assert state.step == 10 and state.epoch == 3 and workload.evals == 0
    assert metrics[names.IMAGES] == 7 * 3
    assert metrics[names.P_WHOLE] <= metrics[names.P_TRAIN] <= metrics[names.P_CORE]


def test_throughput_warmup_spans_epoch_boundaries(tmp_path: Path) -> None:
    """The recipe's warm-up runs for exactly `warmup_iters` optimizer steps, however short an epoch is."""
    trainer, tracker, _ = _trainer(tmp_path, ToyWorkload(), [
        "train.mode=throughput", "train.warmup_steps=0", "train.steps=14", "hp.warmup_iters=10", "hp.lr=0.01",
        "hp.warmup_factor=0.001"], batches=4, case_schedulers=True)
    state = trainer.train()
    assert state.step == 14 and state.epoch == 4  # four epochs of 4 steps, the last one cut at the budget
    lrs = [lr for _, lr in tracker.metrics[names.LR]]
    assert all(later > earlier for earlier, later in zip(lrs[:11], lrs[1:11], strict=False)), lrs
    assert lrs[0] == pytest.approx(1e-5) and lrs[10:] == pytest.approx([0.01] * 4), lrs


def test_non_finite_loss_names_the_step(tmp_path: Path) -> None:
    trainer, _, _ = _trainer(tmp_path, ToyWorkload(poison_step=5), ["train.mode=smoke", "hp.epochs=5"])
    with pytest.raises(NonFiniteLossError, match="loss became nan at step 5"):
        trainer.train()


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("amp_bf16", torch.bfloat16),
                                                  ("amp_bf16_fast", torch.bfloat16)])
def test_precision_sets_autocast(tmp_path: Path, precision: str, dtype: torch.dtype) -> None:
    workload = ToyWorkload()
    trainer, _, _ = _trainer(tmp_path, workload, ["train.mode=smoke", f"train.precision={precision}"])
    trainer.train()
    assert workload.output_dtypes == {dtype}
