"""The lifecycle of one recorded run: it ends FINISHED, FAILED (with `bench.failure`) or KILLED, whatever happens,
with its compliance verdict, its page and its files uploaded, and the metrics measured so far.

    with RecordedRun(prepared, files, tracker, context, started_at) as recorded:
        recorded.record_inputs()
        session = Session.build(prepared, context, recorded)
        recorded.finish(session, session.train())
    recorded.outcome

On an exception the run is ended and the exception goes on (the CLI turns it into an exit code).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from torch import device as torch_device

from suite import names
from suite.config import ResolvedConfig
from suite.engine.compliance import check_log
from suite.engine.distributed import Collectives, DistContext
from suite.engine.flops import mfu
from suite.engine.summary import RunMeasurements, summary_metrics
from suite.engine.trainer import TrainState
from suite.errors import failure_line
from suite.identity import RowIdentity
from suite.launch import environment, signals
from suite.progress import Progress
from suite.tracking import record
from suite.tracking.tracker import Tracker

logger = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_id: str
    status: str
    resolved: ResolvedConfig
    metrics: dict[str, float] = field(default_factory=dict)
    final_map: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    pending_sync: Path | None = None  # the spool folder to `accelbench sync`, when tracking failed during the run
    unrecorded: str | None = None  # why part of the run's record reached neither MLflow nor the journal


class RecordedRun:
    """One rank's view of the run's record; only global rank 0's tracker talks to MLflow (the others' is null)."""

    def __init__(self, prepared: Any, files: record.RunFiles, tracker_factory: Any, context: DistContext,
                 started_at: float, extra_tags: dict[str, str]) -> None:
        self.prepared = prepared
        self.files = files
        self.events = files.events
        self.context = context
        self._tracker_factory = tracker_factory
        self._extra_tags = extra_tags
        self.measured = RunMeasurements(started_at=started_at)
        self.collectives = Collectives(DistContext(), torch_device("cpu"))  # until the session has a device
        self.environment: dict[str, str] = {}
        self.tracker: Tracker
        self.outcome: RunOutcome

    def __enter__(self) -> RecordedRun:
        config = self.prepared.resolved.config
        self.events.start(names.KEY_RUN, case=config.case, vendor=config.vendor, topology=config.topology,
                          mode=config.train.mode)
        self.events.start(names.KEY_INIT)
        self.tracker = self._tracker_factory(experiment=config.tracking.experiment,
                                             run_name=RowIdentity.of(self.prepared.resolved).run_name,
                                             description=record.running_description(self.prepared),
                                             tags={**record.run_tags(self.prepared), **self._extra_tags})
        tracker = self.tracker
        self.measured.tracking_stall_s = lambda: tracker.stall_s
        self.outcome = RunOutcome(run_id=self.tracker.run_id, status="RUNNING", resolved=self.prepared.resolved)
        return self

    # --- what the run records while it sets up ------------------------------------------------------------------
    def record_inputs(self) -> None:
        """Params, environment, resolved config and dataset (rank 0 only: the others' copies would not be read)."""
        if not self.context.is_main:
            return
        self.tracker.log_params(record.run_params(self.prepared.resolved))
        self.environment = environment.collect(self.prepared.adapter, self.prepared.env)
        self.tracker.set_tags({names.ENV_TAG_PREFIX + k: v for k, v in self.environment.items()})
        self.files.write_config(self.prepared.resolved)
        record.log_dataset(self.tracker, self.prepared)

    def math_flags(self, flags: dict[str, str]) -> None:
        self.tracker.set_tags({names.MATH_TAG_PREFIX + k: v for k, v in flags.items()})

    def node_environments(self, nodes: list[dict[str, str]], flags: dict[str, str]) -> None:
        if not self.context.is_main:
            return
        merged = environment.merge_nodes(nodes)
        if len(nodes) > 1:
            self.tracker.set_tags({names.ENV_TAG_PREFIX + k: v for k, v in merged.items()})
        nnodes = self.prepared.resolved.config.nnodes
        self.files.write_environment(merged, nodes, flags, environment.mlperf_system_description(merged, nnodes))

    # --- the end ------------------------------------------------------------------------------------------------
    def finish(self, session: Any, state: TrainState) -> None:
        """The summary over all ranks (collective), then everything rank 0 records about a finished run."""
        config = self.prepared.resolved.config
        metrics = summary_metrics(self.measured, self.collectives, self.events)
        if session.flops_per_image is not None and session.peak_tflops and names.P_CORE in metrics:
            metrics[names.MFU] = mfu(metrics[names.P_CORE], session.flops_per_image, session.peak_tflops,
                                     config.world_size)
        if state.target_reached_at is not None:
            metrics[names.TIME_TO_TARGET] = state.target_reached_at - self.measured.started_at
        metrics.update(record.tracking_metrics(self.tracker))
        self.outcome.metrics = metrics
        self.tracker.log_metrics(metrics, step=state.epoch)
        if self.measured.telemetry is not None:
            record.log_telemetry_series(self.tracker, self.measured.telemetry.series())
        if state.evals:
            self.files.write_evaluations(state.evals)
            self.outcome.final_map = {k: v for k, v in state.evals[-1].metrics.items()
                                      if k in names.IOU_TYPE_METRIC.values()}
        if config.train.mode == "convergence":
            self.tracker.set_tags({names.TAG_CONVERGED: str(state.converged).lower()})
        self.collectives.barrier()  # every rank is done and its log written before rank 0 uploads them
        self.outcome.status = "FINISHED"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        try:
            if error is not None:
                self._failed(error)
        finally:
            self._end()
        return False

    def _failed(self, error: BaseException) -> None:
        Progress.abandon()  # end a bar drawn mid-phase, so the error starts on its own line
        outcome = self.outcome
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C, or SIGTERM/SIGHUP through suite.launch.signals
            outcome.status, outcome.failure = "KILLED", signals.describe(error)
        else:
            outcome.status, outcome.failure = "FAILED", failure_line(error)
            self.files.log_traceback(error)  # the whole story in the run's log file; one line on the console
        logger.error("run %s %s: %s", self.tracker.run_id, outcome.status, outcome.failure)
        telemetry = self.measured.telemetry
        if telemetry is not None:
            telemetry.stop()
        # What this rank measured; no collectives here, since the other ranks may be gone.
        with contextlib.suppress(Exception):
            lone = Collectives(DistContext(), self.measured.device or torch_device("cpu"))
            outcome.metrics = summary_metrics(self.measured, lone)
            outcome.metrics.update(record.tracking_metrics(self.tracker))
            state = self.measured.state
            self.tracker.log_metrics(outcome.metrics, step=state.epoch if state else 0)
        self.tracker.set_tags({names.TAG_FAILURE: f"rank {self.context.rank}: {outcome.failure}"
                               if self.context.distributed else outcome.failure})

    def _end(self) -> None:
        if self.measured.telemetry is not None:
            self.measured.telemetry.probe.close()
        self.events.end(names.KEY_RUN, status=self.outcome.status)
        self.files.close()
        self.tracker.set_tags({
            names.TAG_STATUS: self.outcome.status,
            names.TAG_COMPLIANCE: check_log(self.files.workdir / names.ARTIFACT_EVENTS).tag(),
            names.TAG_DESCRIPTION: record.final_description(self.prepared, self.outcome, self.tracker.experiment_id)})
        try:
            self.files.upload(self.tracker)
        finally:
            self.tracker.finish(self.outcome.status)
            self.outcome.run_id = self.tracker.run_id  # a run recorded offline has one once its spool is uploaded
            self.outcome.pending_sync = self.tracker.pending_sync
            self.outcome.unrecorded = self.tracker.unrecorded
