"""What a benchmark run records: its params and tags, its page, and the files it leaves as artifacts.

One module for all of it, so what a run says about itself is written in one place: the row identity's tags
(suite.identity), the flattened resolved config as params, provenance and git tags, the environment and math records,
the dataset input, telemetry series, evaluation history and the rank's folder of logs and events.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from suite import names
from suite.config import ResolvedConfig
from suite.engine.events import EventLog
from suite.identity import RowIdentity
from suite.redaction import RedactingFormatter
from suite.tracking.provenance import git_state
from suite.tracking.run_page import measured_description
from suite.tracking.tracker import Tracker

SUITE_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)


def run_params(resolved: ResolvedConfig) -> dict[str, Any]:
    """The row's params (bs, lr, global_bs, precision, mode), the step budget, and every resolved config key."""
    config = resolved.config
    throughput = config.train.mode == "throughput"
    params: dict[str, Any] = dict(RowIdentity.of(resolved).params())
    params[names.PARAM_EPOCHS] = None if throughput else config.hp.epochs
    params[names.PARAM_MAX_STEPS] = config.train.warmup_steps + config.train.steps if throughput \
        else config.train.max_steps
    params.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in resolved.flat().items()})
    return params


def run_tags(prepared: Any) -> dict[str, str]:
    """A new measured run's tags: its identity, where its data and weights came from, the suite's git state."""
    tags = RowIdentity.of(prepared.resolved).tags()
    tags.update({
        names.TAG_STATUS: "RUNNING",
        names.TAG_WEIGHTS: prepared.case.backbone_init,
        names.TAG_REPRODUCES: prepared.resolved.config.reproduces or names.REPRODUCES_NONE,
        names.TAG_SUPERSEDED: "false",  # only a published page's older version is (suite.results.published)
        names.TAG_DATA: "synthetic" if prepared.synthetic else "path",
        names.TAG_DATA_ROOT: str(prepared.data_root),
    })
    git = git_state(SUITE_ROOT)
    if git:
        tags[names.TAG_GIT_COMMIT] = git["commit"]
        tags[names.TAG_GIT_DIRTY] = git["dirty"]
    return tags


def what_ran(prepared: Any) -> dict[str, str]:
    """The facts at the top of the run's page."""
    config = prepared.resolved.config
    return {"case": config.case, "accelerator": f"{config.accelerator.name} ({config.vendor})",
            "topology": config.topology, "precision": config.train.precision, "mode": config.train.mode,
            "fix_hp": prepared.resolved.fix_hp_label,
            "data": "synthetic" if prepared.synthetic else "COCO-layout path",
            "backbone": prepared.case.backbone_init}


def running_description(prepared: Any) -> str:
    """The run page while the run is in progress; `final_description` replaces it when it ends."""
    return " · ".join(f"{key} **{value}**" for key, value in what_ran(prepared).items()) + "\n\n*running*"


def final_description(prepared: Any, outcome: Any, experiment_id: str | None) -> str:
    from suite.tracking.rows import outcome_row

    return measured_description(row=outcome_row(outcome), what=what_ran(prepared), experiment_id=experiment_id,
                                failure=outcome.failure)


def tracking_metrics(tracker: Tracker) -> dict[str, float]:
    """How long this run waited on its tracking server (inside e2e_time; left out of the measured phase)."""
    metrics = {names.TRACKING_TIME: tracker.wait_s}
    if tracker.stall_s > 0:
        metrics[names.TRACKING_STALL_TIME] = tracker.stall_s
    return metrics


def log_dataset(tracker: Tracker, prepared: Any) -> None:
    """The dataset input (name, digest, profile), its fingerprint tag and the image counts the run used."""
    record = prepared.case.dataset_record(prepared.data_root)
    if record is None:
        return
    tracker.log_dataset(record)
    tracker.set_tags({names.TAG_DATA_FINGERPRINT: record.digest})
    tracker.log_params({f"data.{k}": v for k, v in record.counts.items()})


def log_telemetry_series(tracker: Tracker, series: list[tuple[int, float, dict[str, float]]]) -> None:
    for index, at, values in series:
        tracker.log_metrics(values, step=index, timestamp=at)


class RunFiles:
    """This rank's local folder (event log, rank log, config, environment and eval files); rank 0 uploads it."""

    def __init__(self, rank: int, parent: Path | None = None, node: int = 0) -> None:
        if parent is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="accelbench-run-"))
        else:
            self.workdir = parent / f"rank{rank}"
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.parent = parent
        self.log_handler = logging.FileHandler(self.workdir / f"rank{rank}.log", encoding="utf-8")
        self.log_handler.setFormatter(RedactingFormatter(names.log_format(rank, node)))
        logging.getLogger().addHandler(self.log_handler)
        self.events = EventLog(self.workdir / names.ARTIFACT_EVENTS, rank=rank)

    def write_config(self, resolved: ResolvedConfig) -> None:
        resolved_file = self.workdir / names.ARTIFACT_CONFIG
        resolved_file.parent.mkdir(parents=True, exist_ok=True)
        resolved_file.write_text(resolved.to_yaml(), encoding="utf-8")
        provenance = {"provenance": resolved.provenance, "fix_hp": resolved.fix_hp,
                      "config_hash": resolved.config_hash()}
        (self.workdir / names.ARTIFACT_PROVENANCE).write_text(yaml.safe_dump(provenance, sort_keys=False),
                                                              encoding="utf-8")
        script = os.environ.get(names.ENV_JOB_SCRIPT)
        if script:  # the scheduler job's script (`accelbench submit`): how the run was started goes with it
            from suite.files import UnreadableFileError, read_text

            target = self.workdir / "scheduler" / Path(script).name
            target.parent.mkdir(exist_ok=True)
            try:
                target.write_text(read_text(Path(script), limit=1 << 20), encoding="utf-8")
            except (OSError, UnreadableFileError) as error:
                logger.warning("the job's script %s is not attached: %s", script, error)

    def write_environment(self, merged: Mapping[str, str], nodes: list[dict[str, str]], math: Mapping[str, str],
                          mlperf: Mapping[str, str]) -> None:
        document = {"fields": dict(merged), "math_flags": dict(math), "mlperf_system_description": dict(mlperf),
                    "nodes": nodes}
        (self.workdir / names.ARTIFACT_ENVIRONMENT).write_text(json.dumps(document, indent=2), encoding="utf-8")

    def write_evaluations(self, evals: list[Any]) -> None:
        history = [{"epoch": r.epoch, "step": r.step, "images_evaluated": r.metrics.get("images_evaluated"),
                    "stats": r.metrics.get("stats"), "summaries": r.metrics.get("summaries")} for r in evals]
        (self.workdir / names.ARTIFACT_EVAL).write_text(json.dumps(history, indent=2), encoding="utf-8")
        for record in evals:
            if "predictions" in record.metrics:
                path = self.workdir / "predictions" / f"epoch{record.epoch}.json"
                path.parent.mkdir(exist_ok=True)
                path.write_text(json.dumps(record.metrics["predictions"]), encoding="utf-8")

    def log_traceback(self, error: BaseException) -> None:
        """The failure's traceback into this rank's log file only (the console shows the one-line reason)."""
        record = logging.LogRecord("suite.launch", logging.ERROR, __file__, 0, "the run failed",
                                   None, (type(error), error, error.__traceback__))
        self.log_handler.handle(record)

    def close(self) -> None:
        self.events.close()
        logging.getLogger().removeHandler(self.log_handler)
        self.log_handler.close()

    def upload(self, tracker: Tracker) -> None:
        for path in sorted(self.workdir.rglob("*")):
            if path.is_file():
                parent = path.parent.relative_to(self.workdir).as_posix()
                tracker.log_artifact(path, None if parent == "." else parent)
        if self.parent is not None:
            # Other ranks on this node share the parent folder; their logs go under rank_logs/.
            for log in sorted(self.parent.glob("rank*/rank*.log")):
                if log.parent != self.workdir:
                    tracker.log_artifact(log, "rank_logs")

    def remove(self) -> None:
        self.close()
        if self.parent is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
