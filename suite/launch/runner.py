"""One benchmark run: check everything, then train and record it as one MLflow run.

`suite.launch.checks.prepare()` does every check that can fail on bad input before a run exists, so a typo never
leaves a half-written run. `execute()` reads top-down: the run's variables in place, its record opened
(suite.launch.lifecycle), the session built (suite.launch.session), trained, and the record closed FINISHED, FAILED
or KILLED with what was measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from suite.config import ResolvedConfig
from suite.engine.distributed import DistContext, destroy_process_group
from suite.engine.trainer import Workload
from suite.launch.checks import Prepared, prepare
from suite.launch.lifecycle import RecordedRun, RunOutcome
from suite.launch.scoped_env import scoped_env
from suite.launch.session import Session
from suite.tracking.provenance import DatasetRecord
from suite.tracking.record import RunFiles
from suite.tracking.spool import SpoolingTracker
from suite.tracking.tracker import NullTracker, Tracker
from suite.vendors.base import VendorAdapter

logger = logging.getLogger(__name__)

TrackerFactory = Callable[..., Tracker]
__all__ = ["Case", "RunOutcome", "execute", "run"]


class Case(Workload, Protocol):
    """What the runner needs from a case beyond the trainer's Workload (cases.detection.case.DetectionCase)."""

    trainable_layers: int | None

    def check_config(self) -> None: ...  # checks of the config alone, before the device stack loads
    def check(self, data_root: Path) -> None: ...  # every check, check_config's included
    def synthetic_root(self) -> Path: ...
    @property
    def backbone_init(self) -> str: ...
    def build_model(self) -> Any: ...
    def calibrate(self, model: Any, device: Any) -> str: ...  # on the device, before training; says what it did
    def reference_model(self, device: Any) -> Any: ...  # the graph with values from no weights file (FLOPs)
    def optimizer(self, model: Any, options: Mapping[str, Any]) -> Any: ...
    def train_loader(self, pin_memory: bool, context: DistContext) -> Any: ...
    def dataset_record(self, root: Path) -> DatasetRecord | None: ...
    def sample_batch(self, count: int) -> Any: ...
    def schedulers(self, optimizer: Any, iters_per_epoch: int) -> tuple[Any, Any]: ...


def execute(prepared: Prepared, *, started_at: float, tracker_factory: TrackerFactory = SpoolingTracker.start,
            context: DistContext | None = None, run_dir: Path | None = None,
            extra_tags: dict[str, str] | None = None) -> RunOutcome:
    """Train and record one run (one rank of it, in a distributed job; global rank 0 records).

    Re-raises a failure after the run has been ended as FAILED or KILLED.
    """
    context = context or DistContext()
    files = RunFiles(context.rank, run_dir, context.node_rank)
    factory = tracker_factory if context.is_main else NullTracker.start
    try:
        with scoped_env(prepared.env), \
                RecordedRun(prepared, files, factory, context, started_at, extra_tags or {}) as recorded:
            recorded.record_inputs()
            session = Session.build(prepared, context, recorded)
            recorded.finish(session, session.train())
        return recorded.outcome
    finally:
        files.remove()
        destroy_process_group()


def run(resolved: ResolvedConfig, *, data_root: Path | None = None, synthetic: bool = False,
        started_at: float, tracker_factory: TrackerFactory = SpoolingTracker.start,
        extra_tags: dict[str, str] | None = None, adapter: VendorAdapter | None = None) -> RunOutcome:
    prepared = prepare(resolved, data_root=data_root, synthetic=synthetic, adapter=adapter)
    return execute(prepared, started_at=started_at, tracker_factory=tracker_factory, extra_tags=extra_tags)
