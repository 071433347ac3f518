"""The training session of one rank: device, process group, math flags, model (DDP where distributed), loader,
clock, telemetry and hooks, built in that order, and what they say about themselves recorded on the way.

    session = Session.build(prepared, context, recorded)   # suite.launch.lifecycle.RecordedRun
    state = session.train()
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import __version__ as torch_version
from torch.nn.parallel import DistributedDataParallel
from torch.random import fork_rng

from suite import names
from suite.engine.distributed import Collectives, DistContext, init_process_group
from suite.engine.flops import count_training_flops, flops_per_image
from suite.engine.hooks import ProgressHook, TrackingHook
from suite.engine.summary import RunMeasurements
from suite.engine.telemetry import Sampler
from suite.engine.timing import PhaseClock
from suite.engine.trainer import Hook, StepRecord, Trainer, TrainState
from suite.launch import environment, signals
from suite.precision import profile
from suite.vendors.base import VendorAdapter

logger = logging.getLogger(__name__)
FLOPS_SEED = 0  # the random draws (flips, RPN and RoI sampling) of the step FLOPs are counted on


def step_flags(adapter: VendorAdapter, precision: str) -> dict[str, str]:
    """The precision's memory format and optimizer implementation, recorded with the math flags."""
    options = adapter.optimizer_options(precision)
    return {"memory_format": "channels_last" if profile(precision).channels_last else "contiguous",
            "optimizer_impl": next((k for k, on in options.items() if on), "default")}


@dataclass
class Session:
    trainer: Trainer
    collectives: Collectives
    measured: RunMeasurements
    flops_per_image: float | None  # training FLOPs per image (rank 0, where the peak is known: for MFU)
    peak_tflops: float | None

    @classmethod
    def build(cls, prepared: Any, context: DistContext, recorded: Any) -> Session:
        config = prepared.resolved.config
        adapter = prepared.adapter
        measured = recorded.measured
        measured.adapter = adapter
        device = measured.device = adapter.device(context.local_rank)
        init_process_group(context, config.accelerator.dist_backend, config.dist.timeout_s)
        collectives = recorded.collectives = Collectives(context, device)
        adapter.manual_seed(config.hp.seed)
        flags = {**adapter.set_math_flags(config.train.precision),
                 **adapter.set_cudnn_flags(config.train.cudnn_benchmark, config.train.cudnn_deterministic),
                 **step_flags(adapter, config.train.precision)}
        recorded.math_flags(flags)
        recorded.node_environments(_node_environments(adapter, prepared.env, context, collectives,
                                                      recorded.environment), flags)

        case = prepared.case
        model = case.build_model().to(device, memory_format=profile(config.train.precision).memory_format)
        frozen_statistics = case.calibrate(model, device)
        recorded.tracker.log_params({
            names.PARAM_TRAINABLE_LAYERS: case.trainable_layers,
            names.PARAM_TRAINABLE_PARAMETERS: sum(p.numel() for p in model.parameters() if p.requires_grad),
            names.PARAM_FROZEN_STATISTICS: frozen_statistics})
        # Only rank 0 records MFU, so only rank 0 counts (the other ranks would redo the same work).
        peak = config.accelerator.peak_tflops.get(profile(config.train.precision).peak_key)
        flops = _training_flops(prepared, device) if context.is_main and peak else None
        if flops is not None:
            recorded.tracker.log_params({names.PARAM_FLOPS_PER_IMAGE: f"{flops:.6g}", names.PARAM_PEAK_TFLOPS: peak})
        optimizer = case.optimizer(model, adapter.optimizer_options(config.train.precision))
        if context.distributed:
            model = DistributedDataParallel(model, device_ids=[device.index] if device.index is not None else None)
        loader = case.train_loader(adapter.pin_memory, context)
        warmup, lr_schedule = case.schedulers(optimizer, len(loader))

        probe = adapter.telemetry_probe(device)
        telemetry = measured.telemetry = Sampler(probe, config.tracking.telemetry_interval_s) if probe else None
        clock = measured.clock = PhaseClock(lambda: adapter.synchronize(device), barrier=collectives.barrier,
                                            on_edge=telemetry.mark if telemetry is not None else None)
        log_every = config.tracking.log_every
        hooks = [ProgressHook(log_every), TrackingHook(recorded.tracker, log_every)] if context.is_main \
            else [ProgressHook(log_every)]
        hooks.append(WarningStop(collectives))
        trainer = Trainer(config=config, workload=case, model=model, optimizer=optimizer, warmup=warmup,
                          lr_schedule=lr_schedule, loader=loader, adapter=adapter, device=device,
                          events=recorded.events, clock=clock, collectives=collectives, hooks=hooks)
        measured.state = trainer.state
        adapter.reset_peak_memory(device)
        return cls(trainer, collectives, measured, flops, peak)

    def train(self) -> TrainState:
        """The untrained model's evaluation where the config asks for it (inside init, as the published runs had
        it), then the measured part: init ends here, telemetry samples while the trainer runs."""
        config = self.trainer.config
        if config.eval.initial and config.train.mode != "throughput":
            self.trainer.evaluate_untrained()
        self.trainer.events.end(names.KEY_INIT)
        self.measured.train_started_at = time.time()
        self.measured.init_stall_s = self.measured.tracking_stall_s()
        telemetry = self.measured.telemetry
        if telemetry is not None:
            telemetry.start()
        try:
            return self.trainer.train()
        finally:
            if telemetry is not None:
                telemetry.stop()


def _training_flops(prepared: Any, device: Any) -> float:
    """Training FLOPs per image of this run's graph and first batch (counted once, then cached).

    Counted on the case's reference model (the run's graph with values from a fixed seed), never on the run's own
    values: the count is a property of the graph and the data, the same with a weights file and without.
    """
    config = prepared.resolved.config
    case = prepared.case
    model_settings = {k: v for k, v in config.model_dump()["model"].items() if k != "backbone_weights"}
    key = {"case": config.case, "model": model_settings, "bs": config.hp.bs, "data": str(prepared.data_root),
           "torch": torch_version, "values": "reference model, fixed seed"}

    def count() -> int:
        # Counting draws random numbers (flips, RPN sampling): keep the run's random streams as they were, and
        # draw the same numbers for every run of this graph and data.
        devices = [device] if device.type == "cuda" else []
        with fork_rng(devices=devices):
            torch.manual_seed(FLOPS_SEED)
            reference = case.reference_model(device)
            batch = case.to_device(case.sample_batch(config.hp.bs), device)
            return count_training_flops(reference, batch, case.loss)

    value, cached = flops_per_image(key, config.hp.bs, count)
    logger.info("training FLOPs per image: %.4g (%s)", value, "cached" if cached else "counted")
    return value


def _node_environments(adapter: VendorAdapter, run_env: dict[str, str], context: DistContext,
                       collectives: Collectives, main_record: dict[str, str]) -> list[dict[str, str]]:
    """One environment record per node (its local rank 0 collects it), in node order. Collective."""
    if not context.distributed:
        return [main_record]
    mine = None
    if context.local_rank == 0:
        mine = main_record if context.is_main else environment.collect(adapter, run_env)
    return [r for r in collectives.gather_objects(mine) if r is not None]


class WarningStop(Hook):
    """Ends training after the step in which a scheduler's warning signal arrived (suite.launch.signals), keeping
    what was measured. The signal reaches every rank, not at the same step: in a multi-process job a scheduler
    started, the ranks agree at every step (one tiny reduction, after the step's timed window) so that they all stop
    after the same one; elsewhere only this process's own signal counts, and nothing is exchanged."""

    def __init__(self, collectives: Collectives) -> None:
        self.collectives = collectives
        self.agree = collectives.context.distributed and bool(
            os.environ.get("SLURM_JOB_ID") or os.environ.get("KUBERNETES_SERVICE_HOST"))

    def after_step(self, trainer: Any, record: StepRecord) -> None:
        warned = signals.warning()
        if self.agree and self.collectives.any_rank(warned is not None) and warned is None:
            warned = signals.Interrupted(signals.WARNINGS[0])  # another rank got it first
        if warned is not None:
            logger.warning("stopping after step %d: %s", record.step, signals.describe(warned))
            raise warned
