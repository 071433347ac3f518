"""Runs on a real SLURM cluster (two `slurmd` nodes on loopback, tests/slurm_cluster.py): a 2x1 job from one `srun`
with no rank or master flags, allocations that do not fit, `accelbench submit`, and the scheduler's stops.

The cluster is started once per test session and stopped by its pid files. Skipped, saying why, where Debian's SLURM
packages are not installed (`bash scripts/install_slurm.sh` installs them; the README's test command runs it).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suite import names
from tests.helpers import LIGHT, REPO, TINY, search_runs
from tests.slurm_cluster import SlurmCluster, missing_binaries

pytestmark = pytest.mark.xdist_group("slurm")  # one worker runs them all, on one cluster
# The issue's own command (retinanet, its ResNet-50) for the 2x1 run; the light model where the case does not matter.
RETINANET_RUN = ["run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", "--mode", "smoke", *TINY]
SLURM_RUN = ["run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", "--mode", "smoke", *LIGHT]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"needs Debian's SLURM and munge ({', '.join(missing)} missing): bash scripts/install_slurm.sh")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd runs jobs as root: needs root")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _srun(cluster: SlurmCluster, *srun_args: str, args: list[str], timeout: float = 600
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["srun", *srun_args, sys.executable, "-m", "suite", *args], cwd=REPO, env=cluster.env,
                          capture_output=True, text=True, timeout=timeout)


def test_srun_starts_a_two_node_run_with_no_rank_or_master_flags(slurm: SlurmCluster, tracking_uri: str) -> None:
    done = _srun(slurm, "-N2", "--ntasks-per-node=1", "--job-name=ab-2x1", args=[*RETINANET_RUN, "--topology", "2x1"])
    assert done.returncode == 0, done.stderr[-4000:]
    (run,) = search_runs(tracking_uri)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags[names.TAG_WORLD_SIZE] == "2"
    assert tags["bench.scheduler"] == "slurm" and tags["slurm.job_name"] == "ab-2x1"
    assert tags["slurm.nodelist"] == "n[1-2]" and tags["slurm.partition"] == "debug" and tags["slurm.job_id"]
    # n1 does not resolve here: the master is its NodeAddr; the port comes from the job id
    assert run.data.params["dist.master_addr"] == "127.0.0.1"
    assert run.data.params["dist.master_port"] == str(20000 + int(tags["slurm.job_id"]) % 20000)


def test_an_allocation_that_does_not_fit_is_one_line_and_no_run(slurm: SlurmCluster, tracking_uri: str,
                                                                 tmp_path: Path) -> None:
    one_node = _srun(slurm, "-N1", "--ntasks-per-node=1", args=[*SLURM_RUN, "--topology", "2x1"])
    two_tasks = _srun(slurm, "-N2", "--ntasks-per-node=2", args=[*SLURM_RUN, "--topology", "2x1"])
    for done, says in ((one_node, "topology 2x1 needs 2 node(s), and the slurm job has 1"),
                       (two_tasks, "starts 2 tasks per node")):
        assert done.returncode == 2, done.stderr[-3000:]
        errors = [line for line in done.stderr.splitlines() if line.startswith("accelbench: error:")]
        assert errors and says in errors[0], done.stderr[-3000:]
    # a multi-node topology in the batch script itself (which runs on the first node only), not under srun
    log = tmp_path / "batch.log"
    command = shlex.join([sys.executable, "-m", "suite", *SLURM_RUN, "--topology", "2x1"])
    batch = subprocess.run(["sbatch", "--parsable", "-N2", f"--output={log}", f"--chdir={REPO}",
                            f"--wrap={command}"], env=slurm.env, capture_output=True, text=True, check=True)
    assert slurm.wait_for_state(batch.stdout.strip(), {"FAILED", "COMPLETED"}) == "FAILED"
    said = [line for line in log.read_text().splitlines() if line.startswith("accelbench: error:")]
    assert said and "this is the batch script of SLURM job" in said[0] and "srun --ntasks-per-node=1" in said[0]
    # fewer devices on the node than the topology's M, where the job says (here: the visible-devices variable)
    env = {**slurm.env, "CUDA_VISIBLE_DEVICES": "0,1"}
    few_devices = subprocess.run(["srun", "-N1", sys.executable, "-m", "suite", "run", "--case", "faster_rcnn",
                                  "--vendor", "nvidia_a100", "--topology", "1x8", "--synthetic"], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=300)
    assert few_devices.returncode == 2, few_devices.stderr[-3000:]
    assert "topology 1x8 needs 8 device(s) per node, and the slurm job gives this node 2" in few_devices.stderr
    assert search_runs(tracking_uri) == []


def _job_id(cluster: SlurmCluster, job_name: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = subprocess.run(["squeue", "-h", "-n", job_name, "-o", "%i"], env=cluster.env, capture_output=True,
                              text=True)
        if done.stdout.strip():
            return done.stdout.split()[0]
        time.sleep(0.2)
    raise AssertionError(f"no job {job_name} in squeue")


def _wait_for_training(tracking_uri: str, process: subprocess.Popen[str], timeout_s: float = 300) -> None:
    """Until the run has logged a training step (its loss)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        runs = search_runs(tracking_uri)
        if runs and "loss" in runs[0].data.metrics:
            return
        time.sleep(0.5)
    raise AssertionError("the run logged no step")


LONG = ["--set", "train.max_steps=500", "--set", "hp.epochs=100", "--set", "data.synthetic.train=64"]


def _job_leftovers() -> list[str]:
    """What a job leaves in TMPDIR: the launchers' job folders, torchrun's and multiprocessing's temp folders."""
    return sorted(p.name for p in Path(os.environ["TMPDIR"]).iterdir()
                  if p.name.startswith(("accelbench-job-", "torchelastic_", "pymp-")))


def _signalled_2x1_job(cluster: SlurmCluster, tracking_uri: str, job_name: str, *scancel: str
                       ) -> tuple[str, str, Any]:
    """A long 2x1 run under srun, sent `scancel [SCANCEL...] JOB` once it trains; (job id, srun's stderr, run)."""
    process = subprocess.Popen(["srun", "-N2", "--ntasks-per-node=1", f"--job-name={job_name}", sys.executable,
                                "-m", "suite", *SLURM_RUN, *LONG, "--set", "data.workers=1", "--topology", "2x1"],
                               cwd=REPO, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        job = _job_id(cluster, job_name)
        _wait_for_training(tracking_uri, process)
        subprocess.run(["scancel", *scancel, job], env=cluster.env, check=True)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "KILLED", stderr[-3000:]
    assert _job_leftovers() == [], stderr[-3000:]
    return job, stderr, run


def test_scancel_ends_the_run_killed_by_the_scheduler_and_leaves_no_temp_folder(
        slurm: SlurmCluster, tracking_uri: str) -> None:
    job, stderr, run = _signalled_2x1_job(slurm, tracking_uri, "ab-cancel")
    # said by node 0's launcher, or by rank 0 itself where the launcher was still at it when SLURM's grace ran out
    reason = run.data.tags[names.TAG_FAILURE].removeprefix("rank 0: ")
    assert reason.startswith(f"cancelled by the scheduler: SLURM job {job} was cancelled"), reason
    assert "DataLoader" not in reason and "FAILED" not in stderr  # the workers' deaths are not taken for the cause
    assert run.data.metrics["loss"] > 0  # what was measured is kept


def test_the_schedulers_warning_signal_stops_at_a_step_boundary_with_the_figures(
        slurm: SlurmCluster, tracking_uri: str) -> None:
    """`#SBATCH --signal=USR1@T` sends SIGUSR1 to every process of the job T seconds before its time limit (a
    real limit fires on a 30 s tick: `scancel --signal=USR1` sends the same signal the same way, now)."""
    job, _, run = _signalled_2x1_job(slurm, tracking_uri, "ab-warn", "--signal=USR1")
    reason = run.data.tags[names.TAG_FAILURE]
    assert f"time limit near: stopped on the warning signal SIGUSR1 of SLURM job {job}" in reason, reason
    metrics = run.data.metrics
    assert 0 < metrics["steps"] < 500 and metrics["p_core"] > 0, metrics  # stopped early, figures kept


def _submit(cluster: SlurmCluster, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "suite", "submit", "--log-dir", str(tmp_path / "jobs"), *args],
                          cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=600)


def test_submit_writes_a_script_sbatch_accepts_and_waits_for_the_run(slurm: SlurmCluster, tracking_uri: str,
                                                                     tmp_path: Path) -> None:
    args = ["run", *RETINANET_RUN[1:], "--topology", "2x1"]
    dry = _submit(slurm, tmp_path, "--dry-run", "--partition", "debug", "--time", "10:00", *args)
    assert dry.returncode == 0, dry.stderr[-3000:]
    script = tmp_path / "dry.sbatch"
    script.write_text(dry.stdout)
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --partition=debug",
                 "#SBATCH --time=10:00", "#SBATCH --signal=USR1@120"):
        assert line in dry.stdout.splitlines(), (line, dry.stdout)
    accepted = subprocess.run(["sbatch", "--test-only", str(script)], env=slurm.env, capture_output=True, text=True)
    assert accepted.returncode == 0 and "to start at" in accepted.stderr, accepted.stderr
    assert search_runs(tracking_uri) == []  # a dry run submits nothing

    done = _submit(slurm, tmp_path, "--wait", *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job = done.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
    assert f"job {job}: COMPLETED" in done.stdout
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FINISHED" and run.data.tags["slurm.job_id"] == job
    assert f"run {run.info.run_id}: FINISHED" in done.stdout
    script_path = Path(run.data.tags[names.TAG_JOB_SCRIPT])
    import mlflow

    attached = mlflow.MlflowClient(tracking_uri).download_artifacts(run.info.run_id, f"scheduler/{script_path.name}",
                                                                    str(tmp_path))
    assert Path(attached).read_text() == script_path.read_text()
    assert (tmp_path / "jobs" / f"accelbench-run-retinanet-cpu-2x1-{job}.log").is_file()


def test_submit_matrix_is_one_job_per_member_and_a_last_one_completing_the_parent(
        slurm: SlurmCluster, tracking_uri: str, tmp_path: Path) -> None:
    done = _submit(slurm, tmp_path, "--wait", "matrix", "--vendor", "cpu", "--cases", "faster_rcnn",
                   "--topologies", "1x1,2x1", "--synthetic", "--mode", "smoke", *LIGHT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = search_runs(tracking_uri)
    (parent,) = [r for r in runs if r.data.tags.get(names.TAG_KIND) == names.KIND_MATRIX]
    members = [r for r in runs if r.data.tags.get(names.TAG_PARENT_RUN) == parent.info.run_id]
    assert sorted(r.data.tags[names.TAG_TOPOLOGY] for r in members) == ["1x1", "2x1"]
    assert {r.info.status for r in members} == {"FINISHED"}
    assert len({r.data.tags["slurm.job_id"] for r in members}) == 2  # one job each
    assert parent.info.status == "FINISHED" and f"parent run {parent.info.run_id}: FINISHED" in done.stdout
    assert parent.data.metrics["faster_rcnn.scaling_2x1.p_core"] > 0
    assert parent.data.tags["slurm.finish_job"] not in parent.data.tags["slurm.member_jobs"].split(",")


def test_a_time_limit_ends_the_run_killed_with_the_time_limit_reason(slurm: SlurmCluster, tracking_uri: str) -> None:
    """A real one-minute limit (SLURM enforces limits on a 30 s tick: this takes 60 to 90 s)."""
    done = _srun(slurm, "-N1", "--time=1", "--job-name=ab-limit",
                 args=[*SLURM_RUN, *LONG, "--set", "train.max_steps=100000", "--topology", "1x1"], timeout=300)
    assert done.returncode != 0
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "KILLED", done.stderr[-3000:]
    reason = run.data.tags[names.TAG_FAILURE]
    assert reason.startswith("time limit reached: SLURM job ") and reason.endswith("ran its 00:01:00"), reason
    assert run.data.metrics["loss"] > 0


def test_waiting_on_a_job_the_controller_no_longer_knows_ends(slurm: SlurmCluster,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller forgets an ended job after MinJobAge (300 s): `--wait` polling then (a laptop back from sleep)
    takes it for ended, where it polled 'UNKNOWN' for ever; the runs it recorded decide the exit code."""
    from suite.launch import submit
    from suite.launch.scheduler import JobNotKnown, job_facts

    monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])
    never = "4000000"  # past every id the test cluster hands out
    with pytest.raises(JobNotKnown, match=f"SLURM job {never}: the controller does not know it"):
        job_facts(never)
    said: list[str] = []
    assert submit.wait_for([never], said.append) == {never: submit.JOB_FORGOTTEN}
    assert said == [f"job {never}: {submit.JOB_FORGOTTEN}"]
    assert submit.finished_state({never: submit.JOB_FORGOTTEN}) == 0
