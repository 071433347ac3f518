"""`accelbench submit`: a benchmark as a job of the cluster's own scheduler, from a login node.

SLURM: an sbatch script (nodes and one task per node from the topology; devices per node as the vendor config's
GRES; CPUs per task; time limit; partition, account, qos, constraint, reservation and extra `#SBATCH` lines from
flags or the config's `cluster:` section; a warning signal before the time limit) whose one step is
`srun accelbench run ...`: every node finds its rank and the master from the job (suite.launch.scheduler). The
script is kept beside the job's log and travels with the run (artifact `scheduler/<script>`, tag
`bench.job_script`). The plain commands (`sbatch --parsable`, `squeue`, `scontrol show job`) do the work: no
accounting database is assumed (`sacct`, and so submitit's job states, need slurmdbd), and nothing needs pickling.

A matrix is one job per member (each topology wants its own allocation) under a parent run created here; a last job,
`--dependency=afterany` on every member, completes the parent's scaling figures from whichever members finished, so
the parent is complete however the members' finishing times interleave.

Kubernetes: the PyTorchJob manifest of the same run (`--dry-run` prints it; this machine has no cluster to apply
it to): one pod per node, the vendor's device plugin resource per pod, shared memory for the data loaders.
"""

from __future__ import annotations

import datetime
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite import names
from suite.config import ClusterSettings
from suite.errors import BenchError
from suite.topology import parse_topology

# A job the controller has forgotten (MinJobAge after its end, when `--wait` was not polling then, e.g. a laptop
# asleep): ended, its state unknown; the runs it recorded say how it went.
JOB_FORGOTTEN = "ENDED (no longer known to the controller)"
JOB_STATES_DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE", JOB_FORGOTTEN}
POLL_S = 2.0


@dataclass(frozen=True)
class JobSpec:
    """One job: the `accelbench` command its nodes run and what it asks the scheduler for."""

    name: str
    command: list[str]  # accelbench's arguments, e.g. ["run", "--case", ...]
    nodes: int
    per_node: int
    gres: str | None
    k8s_resource: str | None
    cluster: ClusterSettings
    cpus_per_task: int
    env: dict[str, str] = field(default_factory=dict)
    dependency: str | None = None


def cpus_per_task(per_node: int, data_workers: int, cluster: ClusterSettings) -> int:
    """Each device's process and its data loader workers (the cluster section's value wins)."""
    return cluster.cpus_per_task or per_node * (1 + data_workers)


def tracking_env() -> dict[str, str]:
    """What a job needs to record where this machine records: the store, as an absolute URI."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return {"MLFLOW_TRACKING_URI": uri}


def sbatch_script(job: JobSpec, *, log_dir: Path, workdir: Path, script_path: Path) -> str:
    """The batch script of `job`: `#SBATCH` lines, the environment, and one `srun` step on every node."""
    cluster = job.cluster
    written = datetime.datetime.now().isoformat(timespec="seconds")
    lines = ["#!/bin/bash", f"# written by accelbench submit on {written}",
             f"#SBATCH --job-name={job.name}", f"#SBATCH --nodes={job.nodes}", "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --cpus-per-task={job.cpus_per_task}", f"#SBATCH --output={log_dir}/{job.name}-%j.log"]
    if job.gres:
        lines.append(f"#SBATCH --gres={job.gres}:{job.per_node}")
    for option, value in (("partition", cluster.partition), ("account", cluster.account), ("qos", cluster.qos),
                          ("constraint", cluster.constraint), ("reservation", cluster.reservation),
                          ("time", cluster.time), ("signal", cluster.warning), ("dependency", job.dependency)):
        if value:
            lines.append(f"#SBATCH --{option}={value}")
    lines += [f"#SBATCH {extra}" for extra in cluster.sbatch]
    env = {**job.env, names.ENV_JOB_SCRIPT: str(script_path)}
    lines += ["", "set -euo pipefail", f"cd {shlex.quote(str(workdir))}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    command = shlex.join([sys.executable, "-m", "suite", *job.command])
    # One task per node; srun passes SIGTERM (scancel, the time limit) and the warning signal to every process.
    lines += [f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 {command}", ""]
    return "\n".join(lines)


def _run(command: list[str], what: str) -> str:
    if shutil.which(command[0]) is None:
        raise BenchError(f"{command[0]} is not on PATH: submit from a node of the SLURM cluster (a login node)")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"{what}: {done.stderr.strip() or f'exit code {done.returncode}'}")
    return done.stdout


def submit_script(script: str, path: Path) -> str:
    """Write the script to `path` and hand it to sbatch; returns the job id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script, encoding="utf-8")
    job_id = _run(["sbatch", "--parsable", str(path)], f"sbatch {path}").strip().split(";")[0]
    if not job_id.isdigit():
        raise BenchError(f"sbatch {path}: no job id in its answer {job_id!r}")
    return job_id


def job_state(job_id: str) -> str:
    """The job's state from the controller: JOB_FORGOTTEN once it no longer knows the job, UNKNOWN while it does
    not answer (asked again at the next poll)."""
    from suite.launch.scheduler import JobNotKnown, job_facts

    try:
        return job_facts(job_id).get("JobState", "UNKNOWN")
    except JobNotKnown:
        return JOB_FORGOTTEN
    except BenchError:
        return "UNKNOWN"


def wait_for(job_ids: list[str], announce: Any) -> dict[str, str]:
    """Follow the jobs to their end; {job id: final state}."""
    final: dict[str, str] = {}
    last: dict[str, str] = {}
    while len(final) < len(job_ids):
        for job_id in job_ids:
            if job_id in final:
                continue
            state = job_state(job_id)
            if state != last.get(job_id):
                announce(f"job {job_id}: {state}")
                last[job_id] = state
            if state in JOB_STATES_DONE:
                final[job_id] = state
        if len(final) < len(job_ids):
            time.sleep(POLL_S)
    return final


def runs_of_job(job_id: str) -> list[Any]:
    """The benchmark runs a SLURM job recorded (tag slurm.job_id)."""
    from suite.tracking.client import client, tag_clause

    mlflow_client = client()
    experiments = [e.experiment_id for e in mlflow_client.search_experiments(max_results=1000)]
    return mlflow_client.search_runs(experiments, tag_clause("slurm.job_id", job_id)) if experiments else []


def job_name(command: str, case: str, vendor: str, topology: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"accelbench-{command}-{case}-{vendor}-{topology}")


def pytorchjob_manifest(job: JobSpec, *, image: str, namespace: str | None) -> dict[str, Any]:
    """A Kubeflow PyTorchJob (kubeflow.org/v1): a Master and N-1 Workers, one pod per node, each running
    `accelbench <command>` (the pod's PET_* variables give its rank and the master: suite.launch.scheduler)."""
    name = re.sub(r"[^a-z0-9-]", "-", job.name.lower())[:63].strip("-")
    resources: dict[str, Any] = {"cpu": str(job.cpus_per_task)}
    if job.k8s_resource:
        resources[job.k8s_resource] = str(job.per_node)
    env = [{"name": k, "value": v} for k, v in sorted(job.env.items())]
    # The job's name and namespace, for the run's tags (the pod has no variable of its own for them).
    env += [{"name": "ACCELBENCH_K8S_JOB_NAME",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['training.kubeflow.org/job-name']"}}},
            {"name": "ACCELBENCH_K8S_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]

    def replica(count: int) -> dict[str, Any]:
        return {"replicas": count, "restartPolicy": "Never", "template": {"spec": {
            "containers": [{"name": "pytorch", "image": image, "command": ["accelbench", *job.command],
                            "env": env, "resources": {"limits": resources, "requests": resources},
                            "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}],
            # DataLoader workers pass batches through shared memory; a container's default /dev/shm is 64 MiB
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]}}}

    specs = {"Master": replica(1)}
    if job.nodes > 1:
        specs["Worker"] = replica(job.nodes - 1)
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata,
            "spec": {"nprocPerNode": str(job.per_node), "runPolicy": {"cleanPodPolicy": "None"},
                     "pytorchReplicaSpecs": specs}}


def check_topology(topology: str) -> tuple[int, int]:
    try:
        return parse_topology(topology)
    except ValueError as e:
        raise BenchError(str(e)) from None


def finished_state(states: dict[str, str]) -> int:
    """The exit code the jobs' states give `--wait`: 0 when every job completed (or ended and was forgotten by the
    controller: the runs it recorded decide then), else 1."""
    return 0 if all(state in ("COMPLETED", JOB_FORGOTTEN) for state in states.values()) else 1

