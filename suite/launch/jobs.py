"""What the CLI's run commands start: one benchmark (in this process, or one node's share on torchrun), the smoke
demo of several cases, and the arguments of a matrix's members. The CLI parses and prints; this runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite import names
from suite.config import ResolvedConfig, resolve
from suite.errors import BenchError, RunError, failure_line, one_line
from suite.launch.scoped_env import scoped_env

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkResult:
    """How one benchmark went: its table rows (one per recorded run) and the job's exit code."""

    rows: list[dict[str, str]]
    returncode: int = 0
    pending_sync: list[Path] = field(default_factory=list)  # spool folders to `accelbench sync`
    unrecorded: list[str] = field(default_factory=list)  # runs whose record is incomplete everywhere, and why


def _outcome_result(outcomes: list[Any]) -> BenchmarkResult:
    from suite.tracking.rows import outcome_row

    return BenchmarkResult([outcome_row(o) for o in outcomes],
                           pending_sync=[o.pending_sync for o in outcomes if o.pending_sync is not None],
                           unrecorded=[f"{o.resolved.config.case} {o.resolved.config.vendor} "
                                       f"{o.resolved.config.topology}: {o.unrecorded}"
                                       for o in outcomes if o.unrecorded])


def run_in_process(resolved: ResolvedConfig, *, data_root: Path | None, synthetic: bool, started_at: float,
                   extra_tags: dict[str, str] | None = None) -> Any:
    """One run of world size 1 in this process; returns its RunOutcome (re-raises a failure after recording it)."""
    # Variables such as OMP_NUM_THREADS or XACC_* are read when the device stack initialises, so they must be in
    # the environment before torch is imported (prepare adds the precision's own; execute scopes both to the run).
    scope = contextlib.nullcontext() if "torch" in sys.modules else scoped_env(resolved.config.accelerator.env)
    with scope:
        from suite.launch.checks import prepare

        prepared = prepare(resolved, data_root=data_root, synthetic=synthetic)  # torch loads with the adapter
        from suite.launch import runner

        try:
            return runner.execute(prepared, started_at=started_at, extra_tags=extra_tags)
        except Exception as error:
            if isinstance(error, BenchError) or (isinstance(error, RunError)
                                                 and "Original Traceback" not in error.message):
                raise  # one line already, in the suite's words
            # recorded as FAILED with this line (and its traceback in the run's log file): the console shows the
            # same one line, not a traceback
            raise RunError(failure_line(error)) from error


def run_benchmark(resolved: ResolvedConfig, *, settings: list[str], config_files: tuple[Path, ...],
                  data_root: Path | None, synthetic: bool, node_rank: int, started_at: float,
                  extra_tags: dict[str, str]) -> BenchmarkResult:
    """One benchmark: in this process for world size 1, else this node's share of a torchrun job."""
    if resolved.config.world_size == 1:
        outcome = run_in_process(resolved, data_root=data_root, synthetic=synthetic, started_at=started_at,
                                 extra_tags=extra_tags)
        return _outcome_result([outcome])
    return _launch(resolved, settings, config_files, data_root, synthetic, node_rank, started_at, extra_tags)


def _launch(resolved: ResolvedConfig, settings: list[str], config_files: tuple[Path, ...], data_root: Path | None,
            synthetic: bool, node_rank: int, started_at: float, extra_tags: dict[str, str]) -> BenchmarkResult:
    from suite.launch import launcher
    from suite.launch.checks import prepare
    from suite.tracking import record

    config = resolved.config
    prepared = prepare(resolved, data_root=data_root, synthetic=synthetic)  # every check, before any run
    spec = launcher.WorkerSpec(case=config.case, vendor=config.vendor, topology=config.topology,
                               overrides=settings, config_files=[str(f.resolve()) for f in config_files],
                               data_root=None if synthetic else str(prepared.data_root), synthetic=synthetic,
                               started_at=started_at, run_dir=launcher.default_run_dir(), node_rank=node_rank,
                               extra_tags=extra_tags)
    visible_devices_var = prepared.adapter.visible_devices_var
    run_env = prepared.env
    tags = {**record.run_tags(prepared), **extra_tags}
    description = record.running_description(prepared)
    del prepared  # the launcher waits for the whole job: don't hold the indexed datasets meanwhile
    result = launcher.launch(config, spec, visible_devices_var=visible_devices_var, run_env=run_env,
                             run_tags=tags, description=description)
    rows = []
    if result.run_id is not None:
        from suite.tracking.rows import mlflow_run_row

        rows.append(mlflow_run_row(resolved, result.run_id))
    return BenchmarkResult(rows, result.returncode)


@dataclass
class SmokeResult:
    outcomes: list[Any] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # runs that failed while running (recorded as FAILED)
    bad_input: list[BenchError] = field(default_factory=list)  # cases refused before their run existed

    @property
    def table(self) -> BenchmarkResult:
        return _outcome_result(self.outcomes)


def smoke(case_names: list[str], vendor: str, overrides: list[str], started_at: float) -> SmokeResult:
    """Each case on synthetic data in smoke mode, one MLflow run each; a case that fails does not stop the others."""
    settings = ["train.mode=smoke", *overrides]
    for case in case_names:  # unknown names and bad flags stop everything before the first run starts
        resolve(case, vendor, "1x1", settings)
    result = SmokeResult()
    for index, case in enumerate(case_names):
        logger.info("smoke %d/%d: %s on %s, synthetic data, a few steps and one evaluation", index + 1,
                    len(case_names), case, vendor)
        if index:
            started_at = time.time()  # later runs in this process start their clock when they begin
        try:
            result.outcomes.append(run_in_process(resolve(case, vendor, "1x1", settings), data_root=None,
                                                  synthetic=True, started_at=started_at))
        except BenchError as e:  # found before this case's run existed: nothing recorded for it
            result.bad_input.append(e)
        except Exception as e:  # noqa: BLE001 - the run is already recorded as FAILED; go on with the next case
            result.failed.append(f"{case}: {one_line(e)}")
    return result


def member_arguments(*, data_root: str, synthetic: bool, mode: str, config_files: tuple[Path, ...],
                     settings: list[str]) -> list[str]:
    """The `accelbench run` arguments every member of a matrix shares."""
    run_args = ["--synthetic"] if synthetic else (["--data-root", data_root] if data_root else [])
    run_args += ["--mode", mode] if mode else []
    for path in config_files:
        run_args += ["--config", str(path.resolve())]
    for setting in settings:
        run_args += ["--set", setting]
    return run_args


def member_tags(round_index: int, parent_run_id: str) -> dict[str, str]:
    """A matrix member's round, and the matrix's parent run (MLflow's standard parent tag)."""
    tags = {names.TAG_ROUND: str(round_index)}
    if parent_run_id:
        tags[names.TAG_PARENT_RUN] = parent_run_id
    return tags
