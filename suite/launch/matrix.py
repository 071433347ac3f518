"""A matrix of runs for one vendor: every requested case x topology, K rounds each, under one parent MLflow run.

Each member is an ordinary `accelbench run` in its own process (so a crash or a torchrun job cannot take the
matrix down), tagged `bench.round` and `mlflow.parentRunId`. Members that fail are reported and the matrix goes on.
Topologies this machine cannot provide (more nodes than one, more devices than present) are skipped with the reason,
or fail the matrix with `strict`. The parent run gets the scaling efficiencies of each case.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from suite import names, registry
from suite.errors import BenchError, RunError, one_line
from suite.launch.launcher import missing_devices, stream_stderr
from suite.launch.mlflow_server import free_port
from suite.progress import Progress
from suite.results.scaling import THROUGHPUTS, efficiencies, implausible
from suite.topology import parse_topology
from suite.tracking.client import client as mlflow_client
from suite.tracking.client import tags_filter

logger = logging.getLogger(__name__)


@dataclass
class Member:
    case: str
    topology: str
    round: int
    status: str = "PENDING"
    run_id: str | None = None
    reason: str = ""


@dataclass
class MatrixResult:
    parent_run_id: str
    members: list[Member] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    scaling: dict[str, float] = field(default_factory=dict)
    implausible: dict[str, list[str]] = field(default_factory=dict)  # scaling key -> why it cannot be trusted

    @property
    def failed(self) -> list[Member]:
        return [m for m in self.members if m.status != "FINISHED"]


def unavailable_reason(topology: str, device_count: int | None) -> str | None:
    """Why this machine cannot run `topology` alone, or None if it can."""
    nodes, per_node = parse_topology(topology)
    if nodes > 1:
        return (f"{topology} needs {nodes} nodes; `accelbench submit matrix` runs it as a job of its own on a "
                f"SLURM cluster")
    shortfall = missing_devices(per_node, device_count)
    return f"{topology} {shortfall}" if shortfall else None


def _member_command(member: Member, vendor: str, parent_run_id: str, run_args: Sequence[str]) -> list[str]:
    command = [sys.executable, "-m", "suite", "run", "--case", member.case, "--vendor", vendor,
               "--topology", member.topology, "--round", str(member.round), "--parent-run-id", parent_run_id,
               *run_args]
    if parse_topology(member.topology) != (1, 1) and "--master-port" not in run_args:
        command += ["--master-port", str(free_port())]  # a fresh rendezvous port per single-node job
    return command


def run_matrix(*, vendor: str, adapter_name: str, cases: Sequence[str], topologies: Sequence[str], repeat: int,
               run_args: Sequence[str], experiment: str, strict: bool = False) -> MatrixResult:
    """Run every member; return what happened. `run_args` are passed to each `accelbench run` as they are."""
    import mlflow

    adapter = registry.adapter_class(adapter_name)()
    adapter.check_available()
    device_count = adapter.device_count()
    members: list[Member] = []
    skipped: list[str] = []
    for topology in topologies:
        reason = unavailable_reason(topology, device_count)
        if reason is not None:
            if strict:
                raise BenchError(f"cannot run topology {reason}")
            skipped.append(reason)
            continue
        members += [Member(case, topology, k) for case in cases for k in range(repeat)]

    tracker = start_parent(vendor=vendor, cases=cases, topologies=topologies, repeat=repeat, experiment=experiment)
    result = MatrixResult(tracker.run_id, members, skipped)
    for reason in skipped:
        logger.warning("skipping %s", reason)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    status = "FINISHED"
    # Lines, not a bar: each member's own progress streams through this terminal in between.
    progress = Progress("matrix", len(members), unit="runs", lines=True)
    try:
        for index, member in enumerate(members, 1):
            logger.info("matrix member %d/%d: %s %s round %d", index, len(members), member.case, member.topology,
                        member.round)
            process = subprocess.Popen(_member_command(member, vendor, tracker.run_id, run_args), env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                       errors="replace")
            kept: collections.deque[str] = collections.deque(maxlen=50)
            stream_stderr(process, kept)
            _record_member(member, tracker.run_id, process.wait(), list(kept))
            progress.update(1, f"last: {member.case} {member.topology} round {member.round} {member.status}",
                            line=True)
        progress.close()
        _complete(tracker, result)
    except BaseException:
        status = "FAILED"
        raise
    finally:
        tracker.finish(status)
    return result


def start_parent(*, vendor: str, cases: Sequence[str], topologies: Sequence[str], repeat: int,
                 experiment: str, extra_tags: dict[str, str] | None = None) -> Any:
    """The matrix's parent run (RUNNING until `_complete`/`finish_parent` ends it)."""
    from suite.tracking.tracker import MlflowTracker

    try:
        return MlflowTracker.start(experiment=experiment, run_name=f"matrix/{vendor}",
                                   description=f"Matrix of {', '.join(cases)} x {', '.join(topologies)} x "
                                               f"{repeat} rounds on {vendor}.",
                                   tags={names.TAG_KIND: names.KIND_MATRIX, names.TAG_VENDOR: vendor,
                                         names.TAG_CASES: ",".join(cases), names.TAG_TOPOLOGIES: ",".join(topologies),
                                         names.TAG_REPEAT: str(repeat), **(extra_tags or {})})
    except Exception as error:  # a matrix groups its members under a parent run: it needs the server to start
        raise RunError(f"cannot create the matrix's parent run: {one_line(error)}") from error


def _complete(tracker: Any, result: MatrixResult) -> None:
    result.scaling, result.implausible = _log_scaling(tracker, result)
    tracker.set_tags({names.TAG_FAILED_MEMBERS: str(len(result.failed)),
                      names.TAG_SKIPPED: "; ".join(result.skipped) or "none"})


def finish_parent(parent_run_id: str) -> MatrixResult:
    """Complete a parent whose members ran as jobs of their own (`accelbench submit matrix`): its scaling figures
    from the members that finished, whenever they did, and its end (FINISHED, or FAILED when a member did not
    finish). Run by the job that depends on all the members, or again by hand: it recomputes from what is there."""
    from suite.tracking.tracker import MlflowTracker

    client = mlflow_client()
    parent = client.get_run(parent_run_id)
    experiments = [parent.info.experiment_id]
    members = []
    for run in client.search_runs(experiments, tags_filter({names.TAG_PARENT_RUN: parent_run_id}),
                                  max_results=10000):
        tags = run.data.tags
        members.append(Member(tags.get(names.TAG_CASE, "?"), tags.get(names.TAG_TOPOLOGY, "?"),
                              int(tags.get(names.TAG_ROUND, "0")), run.info.status, run.info.run_id,
                              tags.get(names.TAG_FAILURE, "")))
    said = parent.data.tags
    expected = (len(said.get(names.TAG_CASES, "").split(",")) * len(said.get(names.TAG_TOPOLOGIES, "").split(","))
                * int(said.get(names.TAG_REPEAT, "1")))
    result = MatrixResult(parent_run_id, members)
    if len(members) < expected:
        result.skipped.append(f"{expected - len(members)} member(s) recorded no run (see their jobs' logs)")
    tracker = MlflowTracker(client, parent_run_id)
    _complete(tracker, result)
    tracker.finish("FINISHED" if not result.failed and not result.skipped else "FAILED")
    return result


def _record_member(member: Member, parent_run_id: str, returncode: int, last_lines: list[str]) -> None:
    client = mlflow_client()
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    runs = client.search_runs(experiments, tags_filter({names.TAG_PARENT_RUN: parent_run_id,
                                                         names.TAG_CASE: member.case,
                                                         names.TAG_TOPOLOGY: member.topology,
                                                         names.TAG_ROUND: str(member.round)}))
    if runs:
        member.run_id = runs[0].info.run_id
        member.status = runs[0].info.status
        member.reason = runs[0].data.tags.get(names.TAG_FAILURE, "")
    else:
        member.status = "NOT STARTED"
    if returncode != 0 and member.status == "FINISHED":
        member.status = "FAILED"
    if member.status != "FINISHED" and not member.reason:
        lines = [line for line in last_lines if line.strip()]
        member.reason = lines[-1] if lines else f"exit code {returncode}"
    if member.status != "FINISHED":
        logger.error("member %s %s round %d %s: %s", member.case, member.topology, member.round, member.status,
                     member.reason)


def _log_scaling(tracker: object, result: MatrixResult) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Log `<case>.scaling_<topology>.<throughput>` on the parent from the finished members' medians, and tag what
    makes a figure implausible (suite.results.scaling.implausible) as `bench.implausible`."""

    client = mlflow_client()
    values: dict[tuple[str, str, str], list[float]] = {}
    for member in result.members:
        if member.status != "FINISHED" or member.run_id is None:
            continue
        metrics = client.get_run(member.run_id).data.metrics
        for metric in THROUGHPUTS:
            if metric in metrics:
                values.setdefault((member.case, metric, member.topology), []).append(metrics[metric])
    scaling: dict[str, float] = {}
    flagged: dict[str, list[str]] = {}
    for case in sorted({m.case for m in result.members}):
        for metric in THROUGHPUTS:
            per_topology = {t: v for (c, m, t), v in values.items() if c == case and m == metric}
            efficiency = efficiencies(per_topology)
            for topology, value in efficiency.items():
                scaling[f"{case}.scaling_{topology}.{metric}"] = value
            for topology, notes in implausible(per_topology, efficiency).items():
                flagged[f"{case}.scaling_{topology}.{metric}"] = notes
    if scaling:
        tracker.log_metrics(scaling)  # type: ignore[attr-defined]
    said = "; ".join(f"{key}: {', '.join(notes)}" for key, notes in flagged.items())
    tracker.set_tags({names.TAG_IMPLAUSIBLE: said or "none"})  # type: ignore[attr-defined]
    return scaling, flagged
