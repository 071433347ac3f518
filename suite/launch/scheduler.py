"""Where this process sits in a cluster scheduler's job: SLURM (a task of an `srun` step, or a batch script) and a
Kubernetes PyTorchJob pod (the Kubeflow training operator's environment).

`accelbench run --topology NxM`, started once per node by the scheduler, takes its node rank, the node count, the
first node's address and a rendezvous port from the job, so one command line serves every node; a flag given on the
command line still wins. A job that does not fit the topology (node count, tasks per node, devices per node where
the scheduler says) is refused before any run exists.

SLURM (in every task of a step; the batch script itself has no SLURM_STEP_ID):
    SLURM_NODEID           this node's index in the step: the node rank
    SLURM_STEP_NUM_NODES   the step's node count (SLURM_NNODES, the job's, outside a step)
    SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE   "1(x2)": tasks per node (accelbench wants one: it starts
                           its own processes per node through torchrun)
    SLURM_STEP_NODELIST / SLURM_JOB_NODELIST   "n[1-2]": `scontrol show hostnames` expands it; the first host is
                           the master, by name where the name resolves, else by the NodeAddr `scontrol show node`
                           gives (node names on a test cluster, or a cluster without DNS for them, do not resolve)
    SLURM_GPUS_ON_NODE, SLURM_JOB_GPUS   the devices the job has on this node, where the cluster schedules them
The rendezvous port is derived from the job id, so two jobs sharing a node do not collide.

Kubernetes PyTorchJob (kubeflow/training-operator, pkg/controller.v1/pytorch/envvar.go and master.go):
    PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK   torchrun's settings, one pod per node
    MASTER_ADDR, MASTER_PORT (PET_MASTER_ADDR, PET_MASTER_PORT in Kubeflow Trainer v2)   the master pod's service
The operator's older form (one process per pod) has only MASTER_ADDR, MASTER_PORT, WORLD_SIZE (the pod count) and
RANK (this pod's index); it is taken as such inside a pod (KUBERNETES_SERVICE_HOST set) when no PET_ variable is.
The job's name comes from ACCELBENCH_K8S_JOB_NAME (the manifest `accelbench submit --scheduler kubernetes` writes
sets it from the pod's `training.kubeflow.org/job-name` label), else from the pod's name (`<job>-master-0`,
`<job>-worker-1`); the namespace from ACCELBENCH_K8S_NAMESPACE, else the service account's namespace file.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from suite import names
from suite.errors import BenchError, one_line
from suite.topology import parse_topology

SLURM = "slurm"
KUBERNETES = "kubernetes"
PORT_BASE, PORT_SPAN = 20000, 20000  # rendezvous ports derived from a job id: 20000..39999
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
POD_NAME = re.compile(r"^(?P<job>.+)-(?:master|worker)-\d+$")
SCONTROL_TIMEOUT_S = 10
# What `#SBATCH --signal=USR1@120` sends ahead of the time limit: stop at the next step boundary, keep the figures.
WARNING_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class SchedulerFitError(BenchError):
    """The scheduler's job does not fit the topology asked for."""


@dataclass(frozen=True)
class Placement:
    """This node's place in a scheduler's job."""

    scheduler: str
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    tasks_per_node: int | None = None  # processes the scheduler started per node, where it says
    devices_on_node: int | None = None  # devices the scheduler gave this node, where it says
    procs_per_node: int | None = None  # worker processes per node the job declares (PyTorchJob nprocPerNode)
    in_step: bool = True  # SLURM: False in the batch script itself, which runs on the first node only
    tags: dict[str, str] = field(default_factory=dict)
    where: str = ""  # how the facts were read, for error messages

    def check_fit(self, topology: str, *, uses_devices: bool) -> None:
        """Refuse a job that cannot run `topology`: one line naming the mismatch."""
        nodes, per_node = parse_topology(topology)
        if self.scheduler == SLURM and not self.in_step and nodes > 1:
            raise SchedulerFitError(
                f"topology {topology} needs {nodes} nodes, and this is the batch script of SLURM job "
                f"{self.tags.get('slurm.job_id')}, which runs on its first node only: start it on every node with "
                f"`srun --ntasks-per-node=1 accelbench run ...`")
        if self.nnodes != nodes:
            raise SchedulerFitError(f"topology {topology} needs {nodes} node(s), and the {self.scheduler} job has "
                                    f"{self.nnodes} ({self.where})")
        if not 0 <= self.node_rank < nodes:
            raise SchedulerFitError(f"node rank {self.node_rank} is not a node of topology {topology} "
                                    f"({self.where})")
        if self.tasks_per_node is not None and self.tasks_per_node != 1:
            raise SchedulerFitError(f"the {self.scheduler} job starts {self.tasks_per_node} tasks per node "
                                    f"({self.where}); accelbench wants one per node (it starts the node's "
                                    f"{per_node} worker(s) itself): use --ntasks-per-node=1")
        if self.procs_per_node is not None and self.procs_per_node != per_node:
            raise SchedulerFitError(f"topology {topology} runs {per_node} worker(s) per node, and the "
                                    f"{self.scheduler} job declares {self.procs_per_node} ({self.where}): set "
                                    f"its nprocPerNode to {per_node}")
        if uses_devices and self.devices_on_node is not None and self.devices_on_node < per_node:
            raise SchedulerFitError(f"topology {topology} needs {per_node} device(s) per node, and the "
                                    f"{self.scheduler} job gives this node {self.devices_on_node} ({self.where})")


def detect(environ: Mapping[str, str] | None = None, *, visible_devices_var: str | None = None) -> Placement | None:
    """The placement the environment describes (SLURM first), or None outside a scheduler's job."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        return _slurm(env, visible_devices_var)
    if env.get("PET_NNODES") or (env.get("KUBERNETES_SERVICE_HOST") and env.get("WORLD_SIZE")
                                 and env.get("MASTER_ADDR")):
        return _kubernetes(env, visible_devices_var)
    return None


def _int(env: Mapping[str, str], name: str, where: str) -> int:
    value = env.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise BenchError(f"{name}={value!r}: not an integer ({where})") from None


def tasks_per_node(text: str) -> int | None:
    """SLURM's compressed count list ("1(x2)", "2,1", "4") as one count per node, or None when nodes differ."""
    counts = set()
    for item in text.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x\d+\))?", item.strip())
        if match is None:
            return None
        counts.add(int(match.group(1)))
    return counts.pop() if len(counts) == 1 else None


def derived_port(job_id: str) -> int:
    digits = re.sub(r"\D", "", job_id) or "0"
    return PORT_BASE + int(digits) % PORT_SPAN


def _visible_devices(env: Mapping[str, str], var: str | None) -> int | None:
    if env.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(env["SLURM_GPUS_ON_NODE"])
    for name in ("SLURM_JOB_GPUS", var):
        if name and env.get(name):
            return len([d for d in env[name].split(",") if d.strip()])
    return None


class JobNotKnown(BenchError):
    """`scontrol show job` says the job id is not one the controller knows."""


def _ignore_stop_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def _scontrol(*args: str) -> str:
    if shutil.which("scontrol") is None:
        raise BenchError("scontrol is not on PATH: the master's address cannot be looked up from the SLURM node "
                         "list (give --master-addr)")
    # Asked during a stop too (stop_reason), while SLURM signals every process of the step: a query started then
    # was itself killed by the SIGTERM (exit -15; 2 of 4 loaded time-limit runs recorded "cancelled" for it).
    # Ignoring the stop signals, it answers; its timeout still bounds it, and SIGKILL still ends it.
    try:
        done = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=SCONTROL_TIMEOUT_S,
                              preexec_fn=_ignore_stop_signals)
    except (OSError, subprocess.SubprocessError) as error:  # no answer within the timeout, or not runnable
        raise BenchError(f"scontrol {' '.join(args)}: {one_line(error)}") from None
    if done.returncode != 0:
        raise BenchError(f"scontrol {' '.join(args)}: {done.stderr.strip() or f'exit code {done.returncode}'}")
    return done.stdout


def _fields(text: str) -> dict[str, str]:
    """The Key=Value fields of `scontrol show job|node` output."""
    return dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", text))


def first_host(nodelist: str) -> str:
    hosts = _scontrol("show", "hostnames", nodelist).split()
    if not hosts:
        raise BenchError(f"scontrol show hostnames {nodelist}: no host")
    return hosts[0]


def node_address(host: str) -> str:
    """`host` where it resolves, else its NodeAddr in SLURM's node table."""
    try:
        socket.getaddrinfo(host, None)
        return host
    except OSError:
        pass
    address = _fields(_scontrol("show", "node", host)).get("NodeAddr")
    if not address:
        raise BenchError(f"{host}: the name does not resolve and `scontrol show node {host}` gives no NodeAddr "
                         f"(give --master-addr)")
    return address


def _slurm(env: Mapping[str, str], visible_devices_var: str | None) -> Placement:
    in_step = "SLURM_STEP_ID" in env
    nodes_var = "SLURM_STEP_NUM_NODES" if in_step and env.get("SLURM_STEP_NUM_NODES") else "SLURM_NNODES"
    where = f"SLURM job {env['SLURM_JOB_ID']}: {nodes_var}={env.get(nodes_var, '?')}"
    tasks_var = "SLURM_STEP_TASKS_PER_NODE" if env.get("SLURM_STEP_TASKS_PER_NODE") else "SLURM_TASKS_PER_NODE"
    tasks = env.get(tasks_var, "")
    if tasks:
        where += f", {tasks_var}={tasks}"
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
    tags = {"slurm.job_id": env["SLURM_JOB_ID"], "slurm.nodelist": nodelist}
    for tag, name in (("slurm.job_name", "SLURM_JOB_NAME"), ("slurm.partition", "SLURM_JOB_PARTITION"),
                      ("slurm.account", "SLURM_JOB_ACCOUNT"), ("slurm.step_id", "SLURM_STEP_ID"),
                      ("slurm.qos", "SLURM_JOB_QOS")):
        if env.get(name):
            tags[tag] = env[name]
    # The batch script itself runs on the job's first node only: one node, whatever the allocation holds.
    nnodes = _int(env, nodes_var, where) if in_step and env.get(nodes_var) else 1
    per_node = tasks_per_node(tasks) if tasks else None
    if tasks and per_node is None:
        raise SchedulerFitError(f"the SLURM job's nodes run different task counts ({where}); accelbench wants one "
                                f"task per node: use --ntasks-per-node=1")
    return Placement(SLURM, nnodes=nnodes, node_rank=_int(env, "SLURM_NODEID", where) if in_step else 0,
                     master_addr=nodelist, master_port=derived_port(env["SLURM_JOB_ID"]),
                     tasks_per_node=per_node if in_step else None,
                     devices_on_node=_visible_devices(env, visible_devices_var), in_step=in_step, tags=tags,
                     where=where)


def master_address(placement: Placement) -> str:
    """The first node's address: for SLURM looked up from the node list (only when it is needed)."""
    if placement.scheduler != SLURM:
        return placement.master_addr
    return node_address(first_host(placement.master_addr))


def _kubernetes(env: Mapping[str, str], visible_devices_var: str | None) -> Placement:
    if env.get("PET_NNODES"):
        where = f"PyTorchJob: PET_NNODES={env['PET_NNODES']}, PET_NODE_RANK={env.get('PET_NODE_RANK', '?')}"
        if not env["PET_NNODES"].isdigit():  # elastic "1:4": not a fixed topology
            raise SchedulerFitError(f"PET_NNODES={env['PET_NNODES']}: an elastic node range; a benchmark needs a "
                                    f"fixed node count (a PyTorchJob without elasticPolicy)")
        nnodes = _int(env, "PET_NNODES", where)
        node_rank = _int(env, "PET_NODE_RANK", where) if env.get("PET_NODE_RANK") else _int(env, "RANK", where)
        nproc = env.get("PET_NPROC_PER_NODE", "")
        per_node = int(nproc) if nproc.isdigit() else None  # "auto": as many as there are devices
    else:
        where = f"PyTorchJob (one process per pod): WORLD_SIZE={env['WORLD_SIZE']}, RANK={env.get('RANK', '?')}"
        nnodes, node_rank, per_node = _int(env, "WORLD_SIZE", where), _int(env, "RANK", where), None
    master_addr = env.get("PET_MASTER_ADDR") or env.get("MASTER_ADDR", "")
    port_name = "PET_MASTER_PORT" if env.get("PET_MASTER_PORT") else "MASTER_PORT"
    if not master_addr or not env.get(port_name):
        raise BenchError(f"a PyTorchJob pod without MASTER_ADDR and MASTER_PORT ({where})")
    tags = {"kubernetes.job_name": _job_name(env), "kubernetes.namespace": _namespace(env),
            "kubernetes.pod": env.get("HOSTNAME", "")}
    return Placement(KUBERNETES, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                     master_port=_int(env, port_name, where), procs_per_node=per_node,
                     devices_on_node=_visible_devices(env, visible_devices_var),
                     tags={k: v for k, v in tags.items() if v}, where=where)


def _job_name(env: Mapping[str, str]) -> str:
    if env.get("ACCELBENCH_K8S_JOB_NAME"):
        return env["ACCELBENCH_K8S_JOB_NAME"]
    match = POD_NAME.match(env.get("HOSTNAME", ""))
    return match.group("job") if match else ""


def _namespace(env: Mapping[str, str]) -> str:
    if env.get("ACCELBENCH_K8S_NAMESPACE"):
        return env["ACCELBENCH_K8S_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class NodeSettings:
    """What a run on this node takes from its scheduler's job: rank, config settings for the rendezvous, tags."""

    node_rank: int
    settings: list[str]
    tags: dict[str, str]


def node_settings(topology: str, adapter: str, *, node_rank: int | None, master_addr: str, master_port: int,
                  environ: Mapping[str, str] | None = None) -> NodeSettings:
    """This node's rank and rendezvous from the scheduler's job, checked against `topology`; flags given on the
    command line (`node_rank` not None, a non-empty `master_addr`, a non-zero `master_port`) win."""
    from suite import registry

    adapter_class = registry.adapter_class(adapter)
    placement = detect(environ, visible_devices_var=adapter_class.visible_devices_var)
    if placement is None:
        return NodeSettings(node_rank or 0, [], {})
    placement.check_fit(topology, uses_devices=adapter_class.visible_devices_var is not None)
    settings = []
    nodes, _ = parse_topology(topology)
    if not master_addr and nodes > 1:
        settings.append(f"dist.master_addr={master_address(placement)}")
    if not master_port:
        settings.append(f"dist.master_port={placement.master_port}")
    tags = {**placement.tags, names.TAG_SCHEDULER: placement.scheduler}
    script = (os.environ if environ is None else environ).get(names.ENV_JOB_SCRIPT)
    if script:  # written by `accelbench submit`; the run attaches the file itself (suite.tracking.record)
        tags[names.TAG_JOB_SCRIPT] = script
    return NodeSettings(placement.node_rank if node_rank is None else node_rank, settings, tags)


def job_facts(job_id: str) -> dict[str, str]:
    """The controller's record of a job, `scontrol show job`'s Key=Value fields (no accounting database needed).

    Raises BenchError when the controller does not answer, or no longer knows the job (it forgets an ended job
    after MinJobAge, 300 s by default): JobNotKnown then.
    """
    try:
        text = _scontrol("show", "job", job_id)
    except BenchError as error:
        if "Invalid job id" in str(error):
            raise JobNotKnown(f"SLURM job {job_id}: the controller does not know it (ended and forgotten, or never "
                              "was)") from None
        raise
    return _fields(text)


def stop_reason(signum: int, received_at: float, environ: Mapping[str, str] | None = None) -> str | None:
    """Why the scheduler sent `signum` (received at `received_at`, epoch seconds), or None outside its job.

    SLURM sends SIGTERM to every process of the job on `scancel` and at its time limit alike (the job is
    COMPLETING either way); at the time limit `scontrol show job` says Reason=TimeLimit (and the signal comes at or
    past the job's EndTime). A SIGTERM while the job is still
    RUNNING came from elsewhere (torchrun stopping the ranks after one failed): not the scheduler's.
    """
    env = os.environ if environ is None else environ
    name = signal.Signals(signum).name
    if env.get("SLURM_JOB_ID"):
        job = env["SLURM_JOB_ID"]
        if signum in WARNING_SIGNALS:
            return f"time limit near: stopped on the warning signal {name} of SLURM job {job}"
        if signum != signal.SIGTERM:
            return None
        try:
            facts = job_facts(job)
        except BenchError:
            facts = {}
        if facts.get("JobState") == "RUNNING":
            return None
        end = facts.get("EndTime", "")
        try:
            ends_at = datetime.datetime.fromisoformat(end).timestamp()
        except ValueError:
            ends_at = None
        limit = facts.get("TimeLimit", "?")
        past_end = limit not in ("?", "UNLIMITED") and ends_at is not None and received_at >= ends_at
        if facts.get("Reason") == "TimeLimit" or past_end:
            return f"time limit reached: SLURM job {job} ran its {limit}"
        return f"cancelled by the scheduler: SLURM job {job} was cancelled ({name})"
    if env.get("KUBERNETES_SERVICE_HOST") and signum == signal.SIGTERM:
        return f"stopped by Kubernetes: pod {env.get('HOSTNAME', '?')} was deleted, evicted or preempted ({name})"
    return None
