"""A real two-node SLURM cluster on loopback for the tests: Debian's munge, slurmctld and two `slurmd -N` daemons.

Everything lives in one temp folder (config, munge key and socket, state, spool, logs, pid files) with ports picked
free, so it touches neither the machine's own SLURM nor its munge. KillWait is SLURM's default, 30 s: the grace a
stopped job has between SIGTERM and SIGKILL to record its end and remove its folders. Nodes n1 and n2 are both
127.0.0.1 (their names do not resolve: the suite must look up NodeAddr). `stop()` ends every daemon it started by its
pid file.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import free_port

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel")
CPUS_PER_NODE = 2


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


class SlurmCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.pid_files: list[Path] = []

    @property
    def env(self) -> dict[str, str]:
        """The environment a client command (srun, sbatch, squeue) needs to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60.0) -> None:
        root = self.root
        for sub in ("state", "spool/n1", "spool/n2", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        key = root / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}", "--bits=1024"], check=True, capture_output=True)
        key.chmod(0o600)
        munge_pid = root / "munged.pid"
        subprocess.run(["munged", f"--key-file={key}", f"--socket={root / 'munge.sock'}",
                        f"--pid-file={munge_pid}", f"--log-file={root / 'log/munged.log'}",
                        f"--seed-file={root / 'munge.seed'}", "--force"], check=True, capture_output=True)
        self.pid_files.append(munge_pid)
        ctl_port, n1_port, n2_port = free_port(), free_port(), free_port()
        # Job ids (and so the rendezvous ports derived from them) differ from one test session's cluster to the
        # next: a job's port is not still held by the previous session's.
        first_job_id = random.randrange(1000, 100000)
        self.conf.write_text(f"""ClusterName=accelbenchtest
SlurmctldHost=localhost
SlurmctldPort={ctl_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / 'munge.sock'}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
MinJobAge=600
FirstJobId={first_job_id}
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}/%n
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root / 'log/slurmctld.log'}
SlurmdLogFile={root}/log/slurmd-%n.log
NodeName=n1 NodeAddr=127.0.0.1 NodeHostname=localhost Port={n1_port} CPUs={CPUS_PER_NODE}
NodeName=n2 NodeAddr=127.0.0.1 NodeHostname=localhost Port={n2_port} CPUs={CPUS_PER_NODE}
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
""", encoding="utf-8")
        subprocess.run(["slurmctld", "-c"], check=True, env=self.env, capture_output=True)
        self.pid_files.append(root / "slurmctld.pid")
        for node in ("n1", "n2"):
            subprocess.run(["slurmd", "-N", node], check=True, env=self.env, capture_output=True)
            self.pid_files.append(root / f"slurmd-{node}.pid")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = subprocess.run(["sinfo", "-h", "-o", "%T %D"], env=self.env, capture_output=True, text=True)
            if done.stdout.split() == ["idle", "2"]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"SLURM cluster not idle after {timeout_s} s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((self.root / "log").glob("*.log")))

    def job_state(self, job_id: str) -> str:
        done = subprocess.run(["scontrol", "show", "job", job_id], env=self.env, capture_output=True, text=True)
        for token in done.stdout.split():
            if token.startswith("JobState="):
                return token.split("=", 1)[1]
        return ""

    def wait_for_state(self, job_id: str, states: set[str], timeout_s: float = 300.0) -> str:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {state!r} after {timeout_s} s")

    def stop(self) -> None:
        for pid_file in reversed(self.pid_files):
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
