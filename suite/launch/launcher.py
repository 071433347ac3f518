"""Multi-process runs on PyTorch's own launcher: one `torchrun` per node, started by `accelbench run`.

Node 0's launcher creates the MLflow run before any worker starts and hands its id to global rank 0, which records
into it. When torchrun exits, the launcher makes the run's final state match the job's: a rank that failed or was
killed ends the job (torchrun stops the others; a peer on another node times out in its next collective after
`dist.timeout_s`), and the run is marked FAILED with the first failure named. The job's exit code is torchrun's,
which is non-zero if any rank failed.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from suite import names
from suite.config import BenchConfig
from suite.errors import one_line
from suite.identity import run_name
from suite.launch import signals
from suite.tracking.client import client as mlflow_client

logger = logging.getLogger(__name__)

KEPT_LAUNCHER_LINES = 400
ROOT_CAUSE_MARKER = "Root Cause"
ENTRY_START = re.compile(r"^\s*\[\d+\]:\s*$")
FIELD_LINE = re.compile(r"^\s*(time|host|rank|exitcode|error_file|traceback)\s*:\s*(.*)$")


@dataclass
class WorkerSpec:
    """What every worker needs to rebuild the same run (written to a JSON file torchrun's workers read)."""

    case: str
    vendor: str
    topology: str
    overrides: list[str]
    config_files: list[str]
    data_root: str | None
    synthetic: bool
    started_at: float
    run_dir: str
    node_rank: int = 0
    extra_tags: dict[str, str] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> WorkerSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def torchrun_command(config: BenchConfig, node_rank: int, spec_path: Path) -> list[str]:
    dist = config.dist
    return [sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(config.nnodes), "--nproc-per-node", str(config.nproc_per_node),
            "--node-rank", str(node_rank), "--master-addr", dist.master_addr, "--master-port", str(dist.master_port),
            "--max-restarts", "0", "--monitor-interval", str(dist.monitor_interval_s),
            "-m", "suite", "worker", str(spec_path)]


def missing_devices(nproc_per_node: int, device_count: int | None) -> str | None:
    """Why this node cannot host `nproc_per_node` workers, or None (device_count None: processes, not devices)."""
    if device_count is not None and device_count < nproc_per_node:
        return f"needs {nproc_per_node} devices per node; this machine has {device_count}"
    return None


def child_environment(config: BenchConfig, visible_devices_var: str | None, run_env: Mapping[str, str],
                      extra: dict[str, str]) -> dict[str, str]:
    """The workers' environment: ours plus the run's variables (`accelerator.env` and the precision's), which this
    launcher process applies only around its own checks."""
    # torchrun takes any PET_<OPTION> variable as its option's value: a PyTorchJob pod's (the operator's rendezvous
    # settings) are the suite's to read (suite.launch.scheduler), not torchrun's, which gets every option it needs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PET_")}
    env.update(run_env)
    if visible_devices_var and visible_devices_var not in env:
        env[visible_devices_var] = ",".join(str(i) for i in range(config.nproc_per_node))
    env.update(extra)
    return env


@dataclass(frozen=True)
class RankFailure:
    rank: str
    host: str
    exitcode: str
    said: str
    traceback: str = ""

    def describe(self) -> str:
        host = f" on {self.host}" if self.host else ""
        return f"rank {self.rank}{host} exited with code {self.exitcode}: {self.said}".strip()

    @property
    def stopped_by_torchrun(self) -> bool:
        return self.exitcode.startswith("-15") or "SIGTERM" in self.said

    @property
    def lost_a_peer(self) -> bool:
        return any(marker in self.traceback for marker in PEER_LOST_MARKERS)


PEER_LOST_MARKERS = ("Connection closed by peer", "Connection reset", "Broken pipe", "timed out", "Timeout")


def failure_entries(lines: Iterable[str]) -> list[RankFailure]:
    """Every rank failure in torchrun's error summary ("[i]:" blocks of rank/exitcode/traceback fields)."""
    entries: list[RankFailure] = []
    fields: dict[str, str] = {}
    traceback_lines: list[str] = []

    def flush() -> None:
        if "rank" in fields:
            said = traceback_lines[-1] if traceback_lines else fields.get("traceback", "")
            text = "\n".join([fields.get("traceback", ""), *traceback_lines])
            entries.append(RankFailure(fields["rank"], fields.get("host", ""), fields.get("exitcode", "?"), said,
                                       text))

    for line in lines:
        if ENTRY_START.match(line) or line.startswith(("=====", "-----")) or ROOT_CAUSE_MARKER in line:
            flush()
            fields, traceback_lines = {}, []
            continue
        match = FIELD_LINE.match(line)
        if match:
            fields[match.group(1)] = match.group(2).strip()
        elif "traceback" in fields and line.strip():
            traceback_lines.append(line.strip())
    flush()
    return entries


def root_cause(lines: Iterable[str]) -> str | None:
    """The failure that started it all, as one line. torchrun's own "root cause" is the earliest report, which
    can be a peer's follow-on error; a rank killed by a signal, or one that failed on its own, comes first."""
    entries = failure_entries(lines)
    if not entries:
        return None
    ranked = sorted(entries, key=lambda e: (e.stopped_by_torchrun, e.lost_a_peer))
    return ranked[0].describe()


def stream_stderr(process: subprocess.Popen[str], kept: collections.deque[str]) -> None:
    """Pass a child's stderr through line by line, keeping the last lines for failure reports."""
    assert process.stderr is not None
    for line in process.stderr:
        sys.stderr.write(line)
        kept.append(line.rstrip("\n"))


@dataclass(frozen=True)
class LaunchResult:
    returncode: int
    run_id: str | None  # node 0 only


def launch(config: BenchConfig, spec: WorkerSpec, *, visible_devices_var: str | None,
           run_env: Mapping[str, str], run_tags: dict[str, str], description: str) -> LaunchResult:
    """Run one node's share of a multi-process job; its exit code is the worst rank's."""
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / f"spec-node{spec.node_rank}.json"
    spec.write(spec_path)
    extra_env: dict[str, str] = {}
    tracker = None
    if spec.node_rank == 0:
        import mlflow

        from suite.tracking.tracker import MlflowTracker, StartFailed

        try:
            tracker = MlflowTracker.start(experiment=config.tracking.experiment,
                                          run_name=run_name(config.case, config.vendor, config.topology,
                                                             fix_hp=run_tags.get(names.TAG_FIX_HP, "/")),
                                          description=description, tags=run_tags)
        except Exception as error:  # the job still runs: global rank 0 records it offline (suite.tracking.spool)
            logger.warning("MLflow tracking failed while creating the run (%s); rank 0 will spool it",
                           one_line(error))
            if isinstance(error, StartFailed):  # the run exists: rank 0 attaches to it, its sync completes it
                extra_env = {"MLFLOW_RUN_ID": error.run_id}
        else:
            extra_env = {"MLFLOW_RUN_ID": tracker.run_id}
        extra_env["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    command = torchrun_command(config, spec.node_rank, spec_path)
    logger.info("node %d: %s", spec.node_rank, " ".join(command))
    kept: collections.deque[str] = collections.deque(maxlen=KEPT_LAUNCHER_LINES)
    # Every temporary folder of the job (torchrun's, the workers' multiprocessing ones) goes inside run_dir, so that
    # removing run_dir leaves nothing behind, however the job ended.
    scratch = run_dir / "tmp"
    scratch.mkdir(exist_ok=True)
    extra_env["TMPDIR"] = str(scratch)
    process = subprocess.Popen(command, env=child_environment(config, visible_devices_var, run_env, extra_env),
                               stderr=subprocess.PIPE, text=True, errors="replace",
                               preexec_fn=signals.ignore_warning_signals)
    interrupted: KeyboardInterrupt | None = None
    try:
        stream_stderr(process, kept)
        returncode = process.wait()
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP to this launcher (suite.launch.signals)
        interrupted = stop
        process.send_signal(signal.SIGTERM)  # torchrun forwards it to its workers
        returncode = process.wait()
    if interrupted is None and returncode != 0 and signals.warning() is not None:
        interrupted = signals.warning()  # the ranks stopped on the scheduler's warning, as this launcher was told
    if interrupted is not None:
        # A stop (Ctrl-C, a scheduler's cancel or time limit) is not a failure to look into, and a scheduler kills
        # what is left after its grace period: the job's folders go first, the run's record after.
        shutil.rmtree(run_dir, ignore_errors=True)
    if tracker is not None:
        try:
            _settle_run(tracker.run_id, returncode, interrupted, kept)
        except Exception as error:  # the server went away: rank 0's spool holds the run (`accelbench sync`)
            logger.warning("could not record how the job ended (%s)", one_line(error))
    if returncode == 0 and interrupted is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif interrupted is None:
        logger.error("node %d: worker logs kept in %s", spec.node_rank, run_dir)
    return LaunchResult(signals.exit_code(interrupted) if interrupted is not None else returncode,
                        tracker.run_id if tracker is not None else None)


def _settle_run(run_id: str, returncode: int, interrupted: KeyboardInterrupt | None, lines: Iterable[str]) -> None:
    """Make the run's recorded status agree with how the job ended."""

    client = mlflow_client()
    if returncode == 0 and interrupted is None:
        status = client.get_run(run_id).info.status
        if status != "FINISHED":  # rank 0 always ends the run; anything else is a launcher-level surprise
            client.set_tag(run_id, names.TAG_FAILURE, f"job succeeded but the run was left {status}")
            client.set_terminated(run_id, status="FAILED")
        return
    status = "KILLED" if interrupted is not None else "FAILED"
    reason = signals.describe(interrupted) if interrupted is not None \
        else root_cause(lines) or f"torchrun exited with code {returncode}"
    rank0_said = client.get_run(run_id).data.tags.get(names.TAG_FAILURE)
    if rank0_said and rank0_said not in reason:
        reason = f"{reason} ({rank0_said})"
    client.set_tag(run_id, names.TAG_FAILURE, reason)
    client.set_tag(run_id, names.TAG_STATUS, status)
    logger.error("job %s: %s", status, reason)
    client.set_terminated(run_id, status=status)


def default_run_dir() -> str:
    return tempfile.mkdtemp(prefix="accelbench-job-")
