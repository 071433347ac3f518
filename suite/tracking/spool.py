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

from suite import files, names, processes
from suite.errors import DataError, RunError, one_line
from suite.redaction import redact_uri
from suite.tracking.client import client as mlflow_client
from suite.tracking.locks import file_lock
from suite.tracking.run_page import save_link_views, with_links
from suite.tracking.tracker import (
    MAX_PARAM_LENGTH,
    MAX_TAG_LENGTH,
    RUN_NAME_TAG,
    MlflowTracker,
    StartFailed,
    as_text,
    dataset_fields,
    ensure_experiment,
    start_tags,
)

if TYPE_CHECKING:
    from suite.tracking.provenance import DatasetRecord

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
    """An append-only JSON-lines file of tracking records, flushed line by line so a killed process keeps them.

    It is a safety net, not a requirement: when it cannot be written (a full or read-only disk), it warns once,
    stops writing, and the run goes on recording to MLflow alone (`usable` turns False).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.created = True  # the folder exists (False: it could not even be made)
        self.problem: str | None = None
        self._file: Any = None
        try:
            self._file = (directory / JOURNAL_FILE).open("a", encoding="utf-8")
        except OSError as error:
            self._fail(error)

    @classmethod
    def create(cls, root: Path, label: str) -> Journal:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
        try:
            root.mkdir(parents=True, exist_ok=True)
            directory = Path(tempfile.mkdtemp(prefix=f"{stamp}-{safe}-", dir=root))
        except OSError as error:
            journal = cls.__new__(cls)
            journal.directory, journal.created, journal.problem, journal._file = root, False, None, None
            journal._fail(error)
            return journal
        return cls(directory)

    @property
    def usable(self) -> bool:
        return self._file is not None and not self._file.closed

    def _fail(self, error: OSError) -> None:
        self.problem = one_line(error)
        logger.warning("the spool journal in %s cannot be written (%s); the run goes on recording to MLflow only, "
                       "without an offline copy", self.directory, self.problem)
        if self._file is not None:
            with contextlib.suppress(OSError):  # flushing what is buffered fails the same way
                self._file.close()
        self._file = None

    def write(self, op: str, **fields: Any) -> None:
        if not self.usable:
            return
        try:
            self._file.write(json.dumps({"op": op, **fields}) + "\n")
            self._file.flush()
        except OSError as error:
            self._fail(error)

    def store_artifact(self, local_path: Path, artifact_path: str | None) -> bool:
        """Copy an artifact into the spool folder; False when it cannot be kept there."""
        if not self.usable:
            return False
        target = self.directory / ARTIFACTS_DIR / (artifact_path or "") / local_path.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local_path, target)
        except OSError as error:
            self._fail(error)
            return False
        self.write("artifact", file=target.relative_to(self.directory).as_posix(), artifact_path=artifact_path)
        return self.usable

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()

    def discard(self) -> None:
        """Everything is on the server: the folder goes, and the spool root too if nothing else is in it."""
        self.close()
        if not self.created:
            return  # `directory` is the spool root itself, which may hold other runs' folders
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):  # other runs' folders are there
            self.directory.parent.rmdir()


# Each journal record's fields and their types (JSON types as Python reads them); anything else in a journal is a
# one-line DataError, not a KeyError in the middle of an upload.
_TEXT, _INT, _NUMBER, _TEXTS = "text", "integer", "number", "text mapping"
RECORD_FIELDS: dict[str, dict[str, str]] = {
    "start": {"experiment": _TEXT, "tags": _TEXTS, "start_time_ms": _INT},
    "online": {"run_id": _TEXT},
    "synced_into": {"run_id": _TEXT},
    "offline": {"reason": _TEXT},
    "params": {"params": _TEXTS},
    "tags": {"tags": _TEXTS},
    "metrics": {"metrics": "number mapping", "step": _INT, "timestamp_ms": _INT},
    "dataset": {"name": _TEXT, "digest": _TEXT, "source_type": _TEXT, "source": _TEXT, "profile": _TEXT},
    "artifact": {"file": _TEXT},
    "finish": {"status": _TEXT, "end_time_ms": _INT},
}
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


def _is(value: Any, kind: str) -> bool:
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _TEXTS:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return isinstance(value, dict) and all(_is(v, _NUMBER) for v in value.values())  # number mapping


def _check_record(record: Any, where: str, directory: Path) -> None:
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    op = record.get("op")
    if op not in RECORD_FIELDS:
        raise DataError(f"{where}: unknown record op {op!r}; valid: {', '.join(RECORD_FIELDS)}")
    for name, kind in RECORD_FIELDS[op].items():
        if not _is(record.get(name), kind):
            raise DataError(f"{where}: {op} record: {name} must be a {kind}, got {record.get(name)!r:.60}")
    if op == "start" and record.get("run_id") is not None and not isinstance(record["run_id"], str):
        raise DataError(f"{where}: start record: run_id must be text or null")
    if op == "finish" and record["status"] not in RUN_STATUSES:
        raise DataError(f"{where}: finish record: status must be one of {', '.join(RUN_STATUSES)}")
    if op == "artifact":
        path = (directory / record["file"]).resolve()
        if directory.resolve() not in path.parents or not path.is_file():
            raise DataError(f"{where}: artifact {record['file']!r} is not a file inside {directory}")
        if record.get("artifact_path") is not None and not isinstance(record["artifact_path"], str):
            raise DataError(f"{where}: artifact record: artifact_path must be text or null")


def read_journal(directory: Path) -> list[dict[str, Any]]:
    """The journal's records, each checked for its shape; a last line cut short by a killed process is dropped."""
    path = directory / JOURNAL_FILE
    if not os.path.lexists(path):  # a journal that is there but not a file is refused by files.read_text
        raise DataError(f"{directory}: not a spooled run (no {JOURNAL_FILE})")
    try:
        lines = files.read_text(path, limit=files.JOURNAL_FILE_LIMIT).splitlines()
    except files.UnreadableFileError as error:
        raise DataError(f"{path}: {error}") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number}: not a JSON record") from None
        except RecursionError:
            raise DataError(f"{path}:{number}: nested too deeply to be a journal record") from None
        _check_record(record, f"{path}:{number}", directory)
        records.append(record)
    if not records or records[0]["op"] != "start":
        raise DataError(f"{path}: does not begin with a start record")
    return records


class SpoolingTracker:
    """The runner's Tracker: MLflow while it answers, and always the journal; journal-only after MLflow fails,
    MLflow-only after the journal fails. It also times how long the run waited on the tracking server."""

    def __init__(self, journal: Journal, online: MlflowTracker | None) -> None:
        self.journal = journal
        self.online = online
        self.run_id = online.run_id if online is not None else ""
        self.pending_sync: Path | None = None  # set by finish() when the spool stays for `accelbench sync`
        # Set by finish() when part of the run's record reached neither MLflow nor the journal: why.
        self.unrecorded: str | None = None
        self.wait_s = 0.0   # seconds spent in calls to the tracking server
        self.stall_s = 0.0  # of which in calls that failed (a server down, or one that never answers)

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
        began = time.perf_counter()
        try:
            tracker.online = MlflowTracker.begin(experiment=experiment, tags=all_tags, start_time_ms=started_ms)
        except Exception as error:
            tracker.stall_s += time.perf_counter() - began
            tracker.run_id = error.run_id if isinstance(error, StartFailed) else attached or ""
            if tracker.run_id and tracker.run_id != attached:  # the store made the run: the sync completes it
                journal.write("online", run_id=tracker.run_id)
            tracker._go_offline("starting the run", error)
        else:
            tracker.run_id = tracker.online.run_id
            journal.write("online", run_id=tracker.run_id)
        tracker.wait_s += time.perf_counter() - began
        return tracker

    @property
    def experiment_id(self) -> str | None:
        return self.online.experiment_id if self.online is not None else None

    def _go_offline(self, doing: str, error: BaseException) -> None:
        self.online = None
        reason = one_line(error, 500)
        self.journal.write("offline", at_ms=_now_ms(), doing=doing, reason=reason)
        if self.journal.usable:
            logger.warning("MLflow tracking failed while %s (%s); the run goes on and is recorded in %s "
                           "(upload it later with `accelbench sync %s`)", doing, reason, self.journal.directory,
                           self.journal.directory)
        else:
            logger.error("MLflow tracking failed while %s (%s), and the spool journal cannot be written either "
                         "(%s): from here on this run is not recorded anywhere; it still trains", doing, reason,
                         self.journal.problem)

    def _send(self, doing: str, call: Any, *args: Any, **kwargs: Any) -> bool:
        if self.online is None:
            return False
        began = time.perf_counter()
        try:
            call(*args, **kwargs)
        except Exception as error:
            self.stall_s += time.perf_counter() - began
            self._go_offline(doing, error)
            return False
        finally:
            self.wait_s += time.perf_counter() - began
        return True

    def log_params(self, params: Mapping[str, Any]) -> None:
        texts = {k: as_text(v, MAX_PARAM_LENGTH) for k, v in params.items()}
        self.journal.write("params", params=texts)
        self._send("logging params", self.online.log_params if self.online else None, texts)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        texts = {k: as_text(v, MAX_TAG_LENGTH) for k, v in tags.items()}
        self.journal.write("tags", tags=texts)
        self._send("setting tags", self.online.set_tags if self.online else None, texts)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    timestamp: float | None = None) -> None:
        millis = round(timestamp * 1000) if timestamp is not None else _now_ms()
        values = {k: float(v) for k, v in metrics.items()}
        self.journal.write("metrics", metrics=values, step=step or 0, timestamp_ms=millis)
        self._send("logging metrics", self.online.log_metrics if self.online else None, values, step=step or 0,
                   timestamp=millis / 1000)

    def log_dataset(self, record: DatasetRecord) -> None:
        fields = dataset_fields(record)
        self.journal.write("dataset", **fields)
        self._send("logging the dataset input", self.online.log_input if self.online else None, fields)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        if self._send("uploading artifacts", self.online.log_artifact if self.online else None, local_path,
                      artifact_path):
            return
        if not self.journal.store_artifact(local_path, artifact_path):
            logger.error("artifact %s could not be uploaded or kept in the spool", local_path.name)

    def finish(self, status: str) -> None:
        ended_ms = _now_ms()
        self.journal.write("finish", status=status, end_time_ms=ended_ms)
        if self._send("ending the run", self.online.finish if self.online else None, status, ended_ms):
            self.journal.discard()
            return
        self.journal.close()
        if not self.journal.created:
            self.unrecorded = f"MLflow failed and no spool journal could be made ({self.journal.problem})"
            logger.error("run %s could not be recorded: %s", self.run_id or "(no id)", self.unrecorded)
            return
        if self.journal.problem is not None:  # what it holds stops where the disk filled up
            self.pending_sync = self.journal.directory
            self.unrecorded = (f"MLflow failed, and the spool journal in {self.pending_sync} stops where it could "
                               f"not be written ({self.journal.problem})")
            logger.error("the run's record is incomplete: %s; `accelbench sync %s` uploads what the journal holds",
                         self.unrecorded, self.pending_sync)
            return
        began = time.perf_counter()
        try:  # the server may be back (a short outage): upload now rather than leave it to the user
            result = sync(self.journal.directory)
        except Exception as error:
            self.pending_sync = self.journal.directory
            logger.warning("the run is kept in %s; upload it with `accelbench sync %s` when the tracking server "
                           "is back (%s)", self.pending_sync, self.pending_sync, one_line(error))
            return
        finally:
            self.wait_s += time.perf_counter() - began
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
        return processes.alive(int(record["pid"]))
    except (KeyError, ValueError, TypeError):
        return False


def pending(root: Path) -> list[Path]:
    """The spooled runs under `root` not yet synced, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / JOURNAL_FILE).is_file() and not (p / SYNCED_FILE).exists())


SYNC_LOCK_FILE = "sync.lock"
SYNC_FAILED_PREFIX = "accelbench sync did not finish uploading this run"


class InProgressError(RunError):
    """The journal's process still runs: its run is in progress, not waiting for `accelbench sync`."""


def sync(directory: Path, client: Any | None = None, *, force: bool = False) -> SyncResult:
    """Upload a spooled run into the configured tracking store; idempotent (nothing already there is duplicated).

    One sync at a time per journal (a lock file beside it): a second `accelbench sync` of the same folder waits,
    then finds it synced. A sync that fails part-way marks the run it created FAILED with the reason, and notes
    the run in the journal, so the next attempt completes that run instead of creating another.
    """
    with file_lock(directory / SYNC_LOCK_FILE):
        return _sync(directory, client, force=force)


def _sync(directory: Path, client: Any | None, *, force: bool) -> SyncResult:
    from mlflow.exceptions import MlflowException

    records = read_journal(directory)
    start = records[0]
    synced = directory / SYNCED_FILE
    if synced.exists() and not force:
        try:
            done = json.loads(synced.read_text(encoding="utf-8"))
            return SyncResult(directory, str(done["run_id"]), False, str(done["status"]), already=True)
        except (ValueError, KeyError, TypeError, OSError):
            raise DataError(f"{synced}: not a sync record; remove it to upload {directory} again") from None
    finish = next((r for r in reversed(records) if r["op"] == "finish"), None)
    if finish is None and _alive(start):
        raise InProgressError(f"{directory}: its run is still in progress (pid {start.get('pid')})")

    client = client or mlflow_client()
    known = [r["run_id"] for r in records if r["op"] in ("synced_into", "online")]
    run_id = (known[-1] if known else None) or start.get("run_id")
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
        _note_run(directory, run_id)
    try:
        # Also for a run the store already had: its start may have failed before these were saved.
        save_link_views(client, (existing or run).info.experiment_id, start["tags"])
        return _upload(directory, records, client, run_id, existing)
    except BaseException as error:
        with contextlib.suppress(Exception):  # the server may be gone again: the journal's note still holds
            client.set_tag(run_id, names.TAG_FAILURE, f"{SYNC_FAILED_PREFIX} ({one_line(error)}); run "
                                                      f"`accelbench sync {directory}` again")
            client.set_terminated(run_id, status="FAILED")
        raise


def _note_run(directory: Path, run_id: str) -> None:
    """Record in the journal the run a sync created, before uploading anything into it."""
    with (directory / JOURNAL_FILE).open("a", encoding="utf-8") as journal:
        journal.write(json.dumps({"op": "synced_into", "run_id": run_id}) + "\n")


def _upload(directory: Path, records: list[dict[str, Any]], client: Any, run_id: str, existing: Any
            ) -> SyncResult:
    import mlflow
    from mlflow.entities import Metric

    start = records[0]
    finish = next((r for r in reversed(records) if r["op"] == "finish"), None)
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
                entry = (record["step"], record["timestamp_ms"], float(value))
                if entry not in logged.setdefault(key, set()):
                    logged[key].add(entry)
                    metrics.append(Metric(key, float(value), record["timestamp_ms"], record["step"]))
        elif op == "dataset":
            fields = {k: record[k] for k in RECORD_FIELDS["dataset"]}
            if fields["digest"] not in known_digests:
                tracker.log_input(fields)
                known_digests.add(fields["digest"])
        elif op == "artifact":
            client.log_artifact(run_id, str(directory / record["file"]), record.get("artifact_path"))
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
    if existing is not None and names.TAG_FAILURE not in all_tags and names.TAG_FAILURE not in tags \
            and str(existing.data.tags.get(names.TAG_FAILURE, "")).startswith(SYNC_FAILED_PREFIX):
        client.delete_tag(run_id, names.TAG_FAILURE)  # an earlier attempt's note; this one completed the run
    end_ms = finish["end_time_ms"] if finish else max(r.get("timestamp_ms", 0) for r in records) or _now_ms()
    client.set_terminated(run_id, status=result.status, end_time=end_ms)
    (directory / SYNCED_FILE).write_text(json.dumps({"run_id": run_id, "status": result.status, "at_ms": _now_ms(),
                                                     "tracking_uri": redact_uri(mlflow.get_tracking_uri())}),
                                         encoding="utf-8")
    return result
