"""One benchmark run: check everything, then train and record it as one MLflow run.

`prepare()` does every check that can fail on bad input (adapter, precision, data, annotations, weights) before a
run exists, so a typo never leaves a half-written run. `execute()` reads top-down: the run's variables in place,
its record opened (suite.launch.lifecycle), the session built (suite.launch.session), trained, and the record closed
FINISHED, FAILED or KILLED with what was measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from suite import registry
from suite.config import ResolvedConfig
from suite.engine.distributed import DistContext, destroy_process_group
from suite.engine.trainer import Workload
from suite.errors import BenchError, ConfigError, DataError
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
__all__ = ["Case", "Prepared", "RunOutcome", "execute", "prepare", "run", "run_environment"]


class Case(Workload, Protocol):
    """What the runner needs from a case beyond the trainer's Workload (cases.detection.case.DetectionCase)."""

    trainable_layers: int | None

    def check(self, data_root: Path) -> None: ...
    def synthetic_root(self) -> Path: ...
    @property
    def backbone_init(self) -> str: ...
    def build_model(self) -> Any: ...
    def optimizer(self, model: Any, options: Mapping[str, Any]) -> Any: ...
    def train_loader(self, pin_memory: bool, context: DistContext) -> Any: ...
    def dataset_record(self, root: Path) -> DatasetRecord | None: ...
    def sample_batch(self, count: int) -> Any: ...
    def schedulers(self, optimizer: Any, iters_per_epoch: int) -> tuple[Any, Any]: ...


@dataclass
class Prepared:
    resolved: ResolvedConfig
    adapter: VendorAdapter
    case: Case
    data_root: Path
    synthetic: bool
    env: dict[str, str] = field(default_factory=dict)  # the run's environment variables (run_environment)


def run_environment(resolved: ResolvedConfig, adapter: VendorAdapter) -> dict[str, str]:
    """The variables a run sets: `accelerator.env` plus what the precision implies on this stack.

    A stack's runtime reads such switches when it initialises, so they are in place before the first device call
    (prepare's availability check) and stay for the run's duration only. `accelerator.env` may not contradict the
    precision: the label must say what math ran.
    """
    config = resolved.config
    implied = adapter.precision_env(config.train.precision)
    for name, value in implied.items():
        given = config.accelerator.env.get(name)
        if given is not None and given != value:
            key = f"accelerator.env.{name}"
            raise ConfigError(f"{given!r} contradicts train.precision {config.train.precision} (which sets "
                              f"{value!r}); leave it out", source=resolved.provenance.get(key), key=key)
    return {**config.accelerator.env, **implied}


def make_adapter(resolved: ResolvedConfig) -> VendorAdapter:
    return registry.adapter_class(resolved.config.accelerator.adapter, where="accelerator.adapter")()


def prepare(resolved: ResolvedConfig, *, data_root: Path | None = None, synthetic: bool = False,
            adapter: VendorAdapter | None = None) -> Prepared:
    """Every input check, before any run is created. Raises BenchError (exit 2) on bad input.

    `adapter` defaults to the one the config names (tests pass one built on a stand-in device runtime).
    """
    config = resolved.config
    adapter = adapter or make_adapter(resolved)
    adapter.check_precision(config.train.precision)
    env = run_environment(resolved, adapter)
    with scoped_env(env):  # the first device call: the runtime starts with the run's switches in place
        adapter.check_available()
        if config.world_size > 1:
            from suite.launch.launcher import missing_devices

            shortfall = missing_devices(config.nproc_per_node, adapter.device_count())
            if shortfall is not None:
                raise BenchError(f"topology {config.topology} {shortfall} for the {adapter.name} adapter")

    case = registry.case_class(config.case)(config)
    if synthetic:
        root = case.synthetic_root()  # the case owns its synthetic data
    else:
        chosen = data_root or (Path(config.data.root) if config.data.root else None)
        if chosen is None:
            raise DataError("no data: pass --data-root DIR (COCO2017 layout), set data.root, or use --synthetic")
        root = chosen.expanduser()
    case.check(root)
    return Prepared(resolved, adapter, case, root, synthetic, env)


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
