"""Tracking that survives the tracking server: a local journal of every record, and `accelbench sync` to upload it.

Every benchmark run writes what it records (params, tags, metrics with their steps and timestamps, dataset inputs,
the final status) to a journal in its own folder under the spool root (`$ACCELBENCH_SPOOL`, default
`./accelbench-spool`) while it also sends it to MLflow. When the run ends with everything on the server, the folder
is deleted. When MLflow fails (unreachable at start, or gone mid-run), the run goes on journal-only: artifacts are
copied into the folder, training is not disturbed, and at the end the run tries once to upload the journal; if the
server is still away, the folder stays and `accelbench sync DIR` uploads it later into a proper run: the run the
server already had (completed, nothing duplicated), or a new one with the journal's start time, tags and
description. A journal whose process died without an end is synced as FAILED.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suite import names
from suite.errors import DataError, RunError, one_line
from suite.run_page import with_links
from suite.tracking import (
    MAX_PARAM_LENGTH,
    MAX_TAG_LENGTH,
    RUN_NAME_TAG,
    MlflowTracker,
    as_text,
    dataset_fields,
    ensure_experiment,
    redact_uri,
    start_tags,
)

if TYPE_CHECKING:
    from suite.provenance import DatasetRecord

logger = logging.getLogger(__name__)

SPOOL_ENV = "ACCELBENCH_SPOOL"
DEFAULT_SPOOL = "accelbench-spool"
JOURNAL_FILE = "journal.jsonl"
SYNCED_FILE = "synced.json"
ARTIFACTS_DIR = "artifacts"


def spool_root() -> Path:
    return Path(os.environ.get(SPOOL_ENV) or DEFAULT_SPOOL).expanduser()


def _now_ms() -> int:
    return round(time.time() * 1000)


class Journal:
    """An append-only JSON-lines file of tracking records, flushed line by line so a killed process keeps them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file = (directory / JOURNAL_FILE).open("a", encoding="utf-8")

    @classmethod
    def create(cls, root: Path, label: str) -> Journal:
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
        return cls(Path(tempfile.mkdtemp(prefix=f"{stamp}-{safe}-", dir=root)))

    def write(self, op: str, **fields: Any) -> None:
        if self._file.closed:
            return
        self._file.write(json.dumps({"op": op, **fields}) + "\n")
        self._file.flush()

    def store_artifact(self, local_path: Path, artifact_path: str | None) -> None:
        target = self.directory / ARTIFACTS_DIR / (artifact_path or "") / local_path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local_path, target)
        self.write("artifact", file=target.relative_to(self.directory).as_posix(), artifact_path=artifact_path)

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        """Everything is on the server: the folder goes, and the spool root too if nothing else is in it."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):  # other runs' folders are there
            self.directory.parent.rmdir()


def read_journal(directory: Path) -> list[dict[str, Any]]:
    """The journal's records; a last line cut short by a killed process is dropped."""
    path = directory / JOURNAL_FILE
    if not path.is_file():
        raise DataError(f"{directory}: not a spooled run (no {JOURNAL_FILE})")
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number}: not a JSON record") from None
    if not records or records[0].get("op") != "start":
        raise DataError(f"{path}: does not begin with a start record")
    return records


class SpoolingTracker:
    """The runner's Tracker: MLflow while it answers, and always the journal; journal-only after MLflow fails."""

    def __init__(self, journal: Journal, online: MlflowTracker | None) -> None:
        self.journal = journal
        self.online = online
        self.run_id = online.run_id if online is not None else ""
        self.pending_sync: Path | None = None  # set by finish() when the spool stays for `accelbench sync`

    @classmethod
    def start(cls, *, experiment: str, run_name: str, description: str | None = None,
              tags: Mapping[str, str] | None = None) -> SpoolingTracker:
        import mlflow

        journal = Journal.create(spool_root(), run_name)
        attached = os.environ.get("MLFLOW_RUN_ID")
        all_tags = start_tags(run_name, description, tags)
        started_ms = _now_ms()
        journal.write("start", experiment=os.environ.get("MLFLOW_EXPERIMENT_NAME") or experiment,
                      run_id=attached, tags=all_tags, start_time_ms=started_ms, pid=os.getpid(),
                      host=socket.gethostname(), tracking_uri=redact_uri(mlflow.get_tracking_uri()))
        tracker = cls(journal, None)
        try:
            tracker.online = MlflowTracker.begin(experiment=experiment, tags=all_tags, start_time_ms=started_ms)
        except Exception as error:
            tracker.run_id = attached or ""
            tracker._go_offline("starting the run", error)
        else:
            tracker.run_id = tracker.online.run_id
            journal.write("online", run_id=tracker.run_id)
        return tracker

    @property
    def experiment_id(self) -> str | None:
        return self.online.experiment_id if self.online is not None else None

    def _go_offline(self, doing: str, error: BaseException) -> None:
        self.online = None
        reason = one_line(error, 500)
        self.journal.write("offline", at_ms=_now_ms(), doing=doing, reason=reason)
        logger.warning("MLflow tracking failed while %s (%s); the run goes on and is recorded in %s "
                       "(upload it later with `accelbench sync %s`)", doing, reason, self.journal.directory,
                       self.journal.directory)

    def _send(self, doing: str, call: Any, *args: Any, **kwargs: Any) -> bool:
        if self.online is None:
            return False
        try:
            call(*args, **kwargs)
        except Exception as error:
            self._go_offline(doing, error)
            return False
        return True

    def log_params(self, params: Mapping[str, Any]) -> None:
        texts = {k: as_text(v, MAX_PARAM_LENGTH) for k, v in params.items()}
        self.journal.write("params", params=texts)
        if self.online is not None:
            self._send("logging params", self.online.log_params, texts)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        texts = {k: as_text(v, MAX_TAG_LENGTH) for k, v in tags.items()}
        self.journal.write("tags", tags=texts)
        if self.online is not None:
            self._send("setting tags", self.online.set_tags, texts)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        millis = round(timestamp * 1000) if timestamp is not None else _now_ms()
        values = {k: float(v) for k, v in metrics.items()}
        self.journal.write("metrics", metrics=values, step=step or 0, timestamp_ms=millis)
        if self.online is not None:
            self._send("logging metrics", self.online.log_metrics, values, step=step or 0, timestamp=millis / 1000)

    def log_dataset(self, record: DatasetRecord) -> None:
        fields = dataset_fields(record)
        self.journal.write("dataset", **fields)
        if self.online is not None:
            self._send("logging the dataset input", self.online.log_input, fields)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        if self.online is not None and self._send("uploading artifacts", self.online.log_artifact, local_path,
                                                  artifact_path):
            return
        self.journal.store_artifact(local_path, artifact_path)

    def finish(self, status: str) -> None:
        ended_ms = _now_ms()
        self.journal.write("finish", status=status, end_time_ms=ended_ms)
        if self.online is not None and self._send("ending the run", self.online.finish, status, ended_ms):
            self.journal.discard()
            return
        self.journal.close()
        try:  # the server may be back (a short outage): upload now rather than leave it to the user
            result = sync(self.journal.directory)
        except Exception as error:
            self.pending_sync = self.journal.directory
            logger.warning("the run is kept in %s; upload it with `accelbench sync %s` when the tracking server "
                           "is back (%s)", self.pending_sync, self.pending_sync, one_line(error))
            return
        self.run_id = result.run_id
        self.journal.discard()
        logger.info("tracking server back: the spooled run was uploaded as run %s", result.run_id)


@dataclass
class SyncResult:
    directory: Path
    run_id: str
    created: bool
    status: str
    metrics: int = 0
    artifacts: int = 0
    already: bool = False
    notes: list[str] = field(default_factory=list)


def _alive(record: dict[str, Any]) -> bool:
    """Whether the journal's process still runs (on this host): its run is not finished, just in progress."""
    if record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def pending(root: Path) -> list[Path]:
    """The spooled runs under `root` not yet synced, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / JOURNAL_FILE).is_file() and not (p / SYNCED_FILE).exists())


def sync(directory: Path, client: Any | None = None, *, force: bool = False) -> SyncResult:
    """Upload a spooled run into the configured tracking store; idempotent (nothing already there is duplicated)."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    records = read_journal(directory)
    start = records[0]
    synced = directory / SYNCED_FILE
    if synced.exists() and not force:
        done = json.loads(synced.read_text(encoding="utf-8"))
        return SyncResult(directory, done["run_id"], False, done["status"], already=True)
    finish = next((r for r in reversed(records) if r["op"] == "finish"), None)
    if finish is None and _alive(start):
        raise RunError(f"{directory}: its run is still in progress (pid {start['pid']})")

    client = client or mlflow.MlflowClient()
    run_id = next((r["run_id"] for r in records if r["op"] == "online"), None) or start.get("run_id")
    existing = None
    if run_id:
        try:
            existing = client.get_run(run_id)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    if existing is None:
        run = client.create_run(ensure_experiment(start["experiment"], client), start_time=start["start_time_ms"],
                                tags=start["tags"], run_name=start["tags"].get(RUN_NAME_TAG))
        run_id = run.info.run_id
    tracker = MlflowTracker(client, run_id)
    result = SyncResult(directory, run_id, existing is None, finish["status"] if finish else "FAILED")
    if existing is not None:
        tracker.set_tags(start["tags"])

    logged: dict[str, set[tuple[int, int, float]]] = {}
    if existing is not None:
        for key in existing.data.metrics:
            logged[key] = {(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)}
    known_digests = {d.dataset.digest for d in existing.inputs.dataset_inputs} if existing is not None else set()
    metrics: list[Any] = []
    for record in records:
        op = record["op"]
        if op == "params":
            tracker.log_params(record["params"])
        elif op == "tags":
            tracker.set_tags(record["tags"])
        elif op == "metrics":
            for key, value in record["metrics"].items():
                entry = (record["step"], record["timestamp_ms"], value)
                if entry not in logged.setdefault(key, set()):
                    logged[key].add(entry)
                    metrics.append(Metric(key, value, record["timestamp_ms"], record["step"]))
        elif op == "dataset":
            fields = {k: v for k, v in record.items() if k != "op"}
            if fields["digest"] not in known_digests:
                tracker.log_input(fields)
                known_digests.add(fields["digest"])
        elif op == "artifact":
            client.log_artifact(run_id, str(directory / record["file"]), record["artifact_path"])
            result.artifacts += 1
    tracker.log_metric_entries(metrics)
    result.metrics = len(metrics)

    offline = [r for r in records if r["op"] == "offline"]
    tags = {names.TAG_SPOOLED: "true"}
    all_tags = {k: v for r in records for k, v in (r.get("tags") or {}).items()}
    if names.TAG_DESCRIPTION in all_tags:  # its links name the experiment, unknown while offline
        tags[names.TAG_DESCRIPTION] = with_links(all_tags[names.TAG_DESCRIPTION], tracker.experiment_id, all_tags)
    if offline:
        tags[names.TAG_SPOOL_REASON] = offline[0]["reason"]
    if finish is None:
        tags[names.TAG_STATUS] = "FAILED"
        tags[names.TAG_FAILURE] = "the run's process ended without finishing the run (killed?)"
    tracker.set_tags(tags)
    end_ms = finish["end_time_ms"] if finish else max(r.get("timestamp_ms", 0) for r in records) or _now_ms()
    client.set_terminated(run_id, status=result.status, end_time=end_ms)
    synced.write_text(json.dumps({"run_id": run_id, "status": result.status, "at_ms": _now_ms(),
                                  "tracking_uri": redact_uri(mlflow.get_tracking_uri())}), encoding="utf-8")
    return result
