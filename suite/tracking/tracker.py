"""Recording a run: the Tracker interface, its MLflow implementation, and an in-memory stand-in for tests.

The MLflow tracker attaches to the run `mlflow run` created (MLFLOW_RUN_ID) or starts one in the configured
experiment, batches metrics so the training loop is not blocked by per-call latency, and never logs a param that the
run already has (MLflow refuses to change a param, and `mlflow run` logs its `-P` values first).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from suite import interrupts
from suite.redaction import redact_uri
from suite.tracking.client import client as mlflow_client
from suite.tracking.client import ensure_experiment
from suite.tracking.run_page import save_link_views

if TYPE_CHECKING:
    from suite.tracking.provenance import DatasetRecord

logger = logging.getLogger(__name__)

MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
FLUSH_EVERY = 200


RUN_NAME_TAG = "mlflow.runName"
DESCRIPTION_TAG = "mlflow.note.content"  # the run page's Markdown description


class StartFailed(Exception):
    """Starting a run failed after the store had made it: `run_id` names the run, for whoever records it
    otherwise (suite.tracking.spool) to complete it later instead of leaving it RUNNING beside a duplicate."""

    def __init__(self, run_id: str, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.run_id = run_id


def experiment_id_for(experiment: str, client: Any | None = None) -> str:
    """Where a new run goes: MLFLOW_EXPERIMENT_ID or MLFLOW_EXPERIMENT_NAME when set (as `mlflow run` and MLflow's
    own API honour them), else `experiment`, created if missing."""
    chosen = os.environ.get("MLFLOW_EXPERIMENT_ID")
    return chosen or ensure_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or experiment, client)


def start_tags(run_name: str, description: str | None, tags: Mapping[str, str] | None) -> dict[str, str]:
    """A new run's tags: ours, its name and description, and MLflow's defaults (user, source, git commit)."""
    from mlflow.tracking.context.registry import resolve_tags

    user = {k: as_text(v, MAX_TAG_LENGTH) for k, v in (tags or {}).items()}
    user[RUN_NAME_TAG] = run_name
    if description:
        user[DESCRIPTION_TAG] = description
    return {k: str(v) for k, v in resolve_tags(user).items()}


class Tracker(Protocol):
    run_id: str
    experiment_id: str | None  # None while the run is recorded offline
    pending_sync: Path | None  # a spooled run's folder, left for `accelbench sync` (suite.tracking.spool)
    unrecorded: str | None  # why part of the run's record reached neither MLflow nor a journal (None: it all did)
    wait_s: float  # seconds spent waiting on the tracking server so far
    stall_s: float  # of which in calls that failed

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None: ...
    def log_dataset(self, record: DatasetRecord) -> None: ...
    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None: ...
    def finish(self, status: str) -> None: ...


def dataset_fields(record: DatasetRecord) -> dict[str, str]:
    """An MLflow Dataset entity's fields for the dataset a run read (a local path: MLflow's local-files source)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():
        # MLflow registers its local-files source twice and warns that a path "can be interpreted in multiple ways"
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(str(record.root))
    return {"name": record.name, "digest": record.digest, "source_type": source._get_source_type(),
            "source": source.to_json(), "profile": json.dumps(record.profile())}


def as_text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else ("null" if value is None else str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MlflowTracker:
    """One MLflow run. Create it with `start()`; end it with `finish(status)`."""

    pending_sync = None
    unrecorded = None
    wait_s = stall_s = 0.0  # timed by suite.tracking.spool's SpoolingTracker, which wraps this one in runs

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = _Shielded(client)
        self.run_id = run_id
        self._pending: list[Any] = []
        run = client.get_run(run_id)
        self.experiment_id: str | None = run.info.experiment_id
        self._existing_params = dict(run.data.params)

    @classmethod
    def start(cls, *, experiment: str, run_name: str, description: str | None = None,
              tags: Mapping[str, str] | None = None) -> MlflowTracker:
        return cls.begin(experiment=experiment, tags=start_tags(run_name, description, tags))

    @classmethod
    def begin(cls, *, experiment: str, tags: Mapping[str, str], start_time_ms: int | None = None) -> MlflowTracker:
        """Create the run (or attach to MLFLOW_RUN_ID's, as under `mlflow run`) with `start_tags()`'s tags.

        The client API rather than `mlflow.start_run`: no process-wide active run is left behind when the tracking
        server fails mid-run, so the next run in the same process starts cleanly.
        """
        import mlflow
        from mlflow.entities import RunStatus, RunTag

        client = mlflow_client()
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id:
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()
                                           if not k.startswith("mlflow.source.")])  # mlflow run set those
        else:
            run = client.create_run(experiment_id_for(experiment, client), start_time=start_time_ms,
                                    tags=dict(tags), run_name=tags.get(RUN_NAME_TAG))
            run_id = run.info.run_id
        logger.info("MLflow run %s in %s", run_id, redact_uri(mlflow.get_tracking_uri()))
        try:
            tracker = cls(client, run_id)
            if tracker.experiment_id:
                save_link_views(client, tracker.experiment_id, tags)
        except Exception as error:
            raise StartFailed(run_id, error) from error
        return tracker

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        fresh = {}
        for key, value in params.items():
            text = as_text(value, MAX_PARAM_LENGTH)
            if key in self._existing_params:
                if self._existing_params[key] != text:
                    logger.warning("param %s is already %r on this run; keeping it (new value %r)",
                                   key, self._existing_params[key], text)
                continue
            fresh[key] = text
        items = [Param(k, v) for k, v in fresh.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i: i + MAX_PARAMS_PER_BATCH])
        self._existing_params.update(fresh)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, as_text(v, MAX_TAG_LENGTH)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[i: i + MAX_TAGS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        from mlflow.entities import Metric

        millis = round((timestamp if timestamp is not None else time.time()) * 1000)
        self._pending.extend(Metric(k, float(v), millis, step or 0) for k, v in metrics.items())
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def log_metric_entries(self, entries: Iterable[Any]) -> None:
        """MLflow `Metric` entities as they are (their own steps and timestamps), sent now."""
        self._pending.extend(entries)
        self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:MAX_METRICS_PER_BATCH], self._pending[MAX_METRICS_PER_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_dataset(self, record: DatasetRecord) -> None:
        """An MLflow dataset input: the UI's run page and the runs table's Dataset column show it."""
        self.log_input(dataset_fields(record))

    def log_input(self, fields: Mapping[str, str]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        inputs = [DatasetInput(Dataset(**fields), [InputTag("mlflow.data.context", "training")])]
        try:
            self.client.log_inputs(self.run_id, inputs)
        except MlflowException:
            # MLflow's store checks for the dataset, then inserts it: two runs of one experiment logging the same
            # dataset at once race, and the loser gets a UNIQUE-constraint error (seen with eight concurrent runs
            # on one server). The dataset exists now, so a second call only links it to this run.
            time.sleep(0.5)
            self.client.log_inputs(self.run_id, inputs)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def finish(self, status: str, end_time_ms: int | None = None) -> None:
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status, end_time=end_time_ms)


class _Shielded:
    """An MlflowClient whose calls a stop signal waits for (suite.interrupts)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with interrupts.shielded():
                return attribute(*args, **kwargs)

        return call


class MemoryTracker:
    """An in-process recorder with the Tracker interface, for tests of code that records runs."""

    pending_sync = None
    unrecorded = None
    experiment_id = None
    wait_s = stall_s = 0.0

    def __init__(self, run_id: str = "memory") -> None:
        self.run_id = run_id
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: dict[str, Path] = {}
        self.datasets: list[DatasetRecord] = []
        self.status: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.params.setdefault(key, as_text(value, MAX_PARAM_LENGTH))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: as_text(v, MAX_TAG_LENGTH) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step or 0, float(value)))

    def log_dataset(self, record: DatasetRecord) -> None:
        self.datasets.append(record)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        self.artifacts[f"{artifact_path + '/' if artifact_path else ''}{local_path.name}"] = local_path

    def finish(self, status: str) -> None:
        self.status = status


class NullTracker:
    """The tracker of ranks other than 0: only global rank 0 talks to MLflow."""

    run_id = ""
    pending_sync = None
    unrecorded = None
    experiment_id = None
    wait_s = stall_s = 0.0

    @classmethod
    def start(cls, **_: Any) -> NullTracker:
        return cls()

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        return None

    def log_dataset(self, record: DatasetRecord) -> None:
        return None

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        return None

    def finish(self, status: str) -> None:
        return None
