"""Faults in the machinery around a run, for real: a full spool disk, a sync that fails part-way, two syncs or two
imports at once, a journal still in progress, a tracking server that never answers, and secrets in the URI."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite import names
from suite.launch.mlflow_server import MlflowServer
from suite.tracking.spool import SpoolingTracker, pending, read_journal, spool_root
from tests.helpers import LIGHT_RUN, REPO, FlakyProxy, artifact_paths, dead_uri, invoke, run_cli, search_runs


def _mount_available(where: Path) -> bool:
    """Whether this machine lets the tests mount a tmpfs in a private mount namespace (root, or user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs '{where}'"],
                           capture_output=True, text=True)
    return probe.returncode == 0


def test_a_full_spool_disk_does_not_stop_a_healthy_run(tmp_path: Path, tracking_uri: str) -> None:
    spool = tmp_path / "full-spool"
    if not _mount_available(spool):
        pytest.skip("cannot mount a small tmpfs here (needs root or user namespaces)")
    # 4 KiB: the journal's first records fit (about 1.2 KB, then 1.6 KB of params); the rest fills it mid-run
    command = (f"mount -t tmpfs -o size=4k tmpfs '{spool}' && exec '{sys.executable}' -m suite "
               f"{' '.join(shlex.quote(w) for w in LIGHT_RUN)}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", command], cwd=REPO, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "ACCELBENCH_SPOOL": str(spool)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "spool journal" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FINISHED" and run.data.tags[names.TAG_STATUS] == "FINISHED"
    assert {names.P_CORE, names.MAP, names.E2E_TIME} <= set(run.data.metrics)
    assert "events.jsonl" in artifact_paths(tracking_uri, run.info.run_id)


def test_a_spool_that_cannot_be_made_does_not_stop_a_healthy_run(tmp_path: Path, tracking_uri: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(*LIGHT_RUN, env={"ACCELBENCH_SPOOL": str(blocker / "spool")}, console=True)
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "cannot be written" in result.stderr
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FINISHED" and names.P_CORE in run.data.metrics


def _offline_run(*extra: str) -> Path:
    """A run recorded while its tracking server is down: its spool folder, waiting for `accelbench sync`."""
    result = invoke(*LIGHT_RUN, *extra, env={"MLFLOW_TRACKING_URI": dead_uri()})  # sync is what is tested
    assert result.exit_code == 0, result.stderr[-3000:]
    (folder,) = pending(spool_root())
    return folder


def test_a_failed_sync_marks_its_run_failed_and_a_retry_completes_that_run(mlflow_server: MlflowServer) -> None:
    folder = _offline_run()
    proxy = FlakyProxy(mlflow_server.uri)
    try:
        proxy.refuse = "/mlflow-artifacts/"  # the run is created and filled, then the artifact upload fails
        failed = invoke("sync", env={"MLFLOW_TRACKING_URI": proxy.uri})
        assert failed.exit_code == 1, failed.stdout + failed.stderr
        assert proxy.refused >= 1 and "upload failed" in failed.stderr and "Traceback" not in failed.stderr
        (run,) = search_runs(mlflow_server.uri)
        assert run.info.status == "FAILED"  # not left RUNNING
        assert run.data.tags[names.TAG_FAILURE].startswith("accelbench sync did not finish uploading this run")
        assert pending(spool_root()) == [folder]

        proxy.refuse = None
        again = invoke("sync", env={"MLFLOW_TRACKING_URI": proxy.uri})
        assert again.exit_code == 0, again.stdout + again.stderr
        assert f"completed run {run.info.run_id} (FINISHED;" in again.stdout
    finally:
        proxy.close()
    (run,) = search_runs(mlflow_server.uri)  # the same run, not a second one
    assert run.info.status == "FINISHED" and names.TAG_FAILURE not in run.data.tags
    assert "events.jsonl" in artifact_paths(mlflow_server.uri, run.info.run_id)
    assert [r["op"] for r in read_journal(folder)].count("synced_into") == 1


def _together(*commands: list[str], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    jobs = [subprocess.Popen([sys.executable, "-m", "suite", *c], cwd=REPO, env={**os.environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    done = []
    for job, command in zip(jobs, commands, strict=True):
        out, err = job.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(command, job.returncode, out, err))
    return done


def test_two_syncs_of_one_journal_make_one_run(mlflow_server: MlflowServer) -> None:
    folder = _offline_run()
    results = _together(["sync", str(folder)], ["sync", str(folder)], env={"MLFLOW_TRACKING_URI": mlflow_server.uri})
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert sum("already synced" in r.stdout for r in results) == 1
    assert len(search_runs(mlflow_server.uri)) == 1


def test_two_imports_at_once_record_each_published_row_once(mlflow_server: MlflowServer) -> None:
    results = _together(["import-published"], ["import-published"], env={"MLFLOW_TRACKING_URI": mlflow_server.uri})
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert sorted(r.stdout.split(";")[1].split(",")[0].strip() for r in results) == ["created 0", "created 35"]
    assert len(search_runs(mlflow_server.uri)) == 35


def test_sync_leaves_a_run_in_progress_alone_and_syncs_the_rest(mlflow_server: MlflowServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead_uri())
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    in_progress = SpoolingTracker.start(experiment="accelbench", run_name="retinanet/cpu/1x1")  # this process
    done = SpoolingTracker.start(experiment="accelbench", run_name="faster_rcnn/cpu/1x1")
    done.log_metrics({names.P_CORE: 5.0})
    done.finish("FINISHED")
    assert done.pending_sync is not None and in_progress.pending_sync is None
    result = run_cli("sync", env={"MLFLOW_TRACKING_URI": mlflow_server.uri})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{in_progress.journal.directory}: its run is still in progress (pid {os.getpid()}): left alone" \
        in result.stdout
    assert f"{done.pending_sync}: created run" in result.stdout
    (run,) = search_runs(mlflow_server.uri)
    assert run.info.run_name == "faster_rcnn/cpu/1x1" and run.data.metrics[names.P_CORE] == 5.0
    assert pending(spool_root()) == [in_progress.journal.directory]


def test_a_server_that_never_answers_costs_seconds_and_is_recorded(silent_server: str) -> None:
    began = time.monotonic()
    # In a process of its own: e2e_time counts from the process's start, which `elapsed` then bounds.
    result = run_cli(*LIGHT_RUN,
                     # 10 s per try: the stall then outlasts the run's training even on a machine loaded by the
                     # other test workers (training took 19 s there, against 3 s alone)
                     env={"MLFLOW_TRACKING_URI": silent_server, "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr[-3000:]
    assert elapsed < 120, elapsed  # MLflow's own timeout (120 s, three tries, twice) would take 12 minutes
    (folder,) = pending(spool_root())
    records = read_journal(folder)
    metrics = {k: v for r in records if r["op"] == "metrics" for k, v in r["metrics"].items()}
    # the stall (three tries of 10 s at the start) is recorded as such, beside the phases it is kept out of
    stall = metrics[names.TRACKING_STALL_TIME]
    assert stall >= 30 and metrics[names.TRACKING_TIME] >= stall
    assert metrics[names.TRAIN_TIME] < stall
    # ...and kept out of init_time and e2e_time too: they are the benchmark's times, the stall is the suite's. By the
    # journal's own clock, the summary was logged `since_start` after the run's record began (the process started a
    # few seconds before that, importing torch); e2e_time is that, less the stall.
    started = records[0]["start_time_ms"]
    summary = next(r for r in records if r["op"] == "metrics" and names.E2E_TIME in r["metrics"])
    since_start = (summary["timestamp_ms"] - started) / 1000
    assert since_start - stall <= metrics[names.E2E_TIME] < since_start - stall + 15
    assert metrics[names.INIT_TIME] < stall
    assert metrics[names.E2E_TIME] < elapsed - 30


def test_the_request_timeout_is_bounded_unless_the_user_sets_one() -> None:
    """The CLI's entry point applies the client defaults; importing the suite changes nothing."""
    code = ("import atexit, os, sys; import suite; before = os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT'); "
            "atexit.register(lambda: print(before, os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT'])); "
            "sys.argv = ['accelbench', '--version']; from suite.cli import main; main()")
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "MLFLOW_HTTP_REQUEST_TIMEOUT"})
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MLFLOW_HTTP_REQUEST_TIMEOUT": "45"})
    assert ours.stdout.split()[-2:] == ["None", "10"], ours.stdout + ours.stderr
    assert theirs.stdout.split()[-2:] == ["45", "45"], theirs.stdout + theirs.stderr


def test_a_password_in_the_tracking_uri_is_never_written(tmp_path: Path) -> None:
    secret = "s3cr3t-pw"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://alice:{secret}@127.0.0.1:{port}"
    result = invoke(*LIGHT_RUN, env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
                    console=True)
    assert result.exit_code == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr and "alice:***@" in result.stderr
    (folder,) = pending(spool_root())
    for path in folder.rglob("*"):  # the journal, its copies of rank0.log and every other artifact
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    reason = next(r for r in read_journal(folder) if r["op"] == "offline")["reason"]
    assert "alice:***@127.0.0.1" in reason
    ui = invoke("ui", "--port", "0", env={"MLFLOW_TRACKING_URI": uri}, console=True)
    assert secret not in ui.stdout + ui.stderr and "alice:***@" in ui.stdout


def test_no_console_line_of_a_run_or_a_sync_shows_the_password(mlflow_server: MlflowServer) -> None:
    """MLflow itself prints "View run ... at: <uri>" straight to stdout where a user turns it back on; the console
    script masks that too. The suite's own link to the run's page has no user or password and opens the training
    layout."""
    secret = "s3cr3t-pw"
    folder = _offline_run()  # for `sync` to upload
    uri = mlflow_server.uri.replace("http://", f"http://alice:{secret}@")
    mlflow_prints = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "false"}
    ran = run_cli(*LIGHT_RUN, env=mlflow_prints)
    synced = run_cli("sync", str(folder), env=mlflow_prints)
    for done in (ran, synced):
        assert done.returncode == 0, done.stderr[-3000:]
        assert "View run" in done.stdout + done.stderr  # MLflow's line is there, masked
        assert secret not in done.stdout + done.stderr and "alice:***@127.0.0.1" in done.stdout + done.stderr
    quiet = run_cli(*LIGHT_RUN, env={"MLFLOW_TRACKING_URI": uri})
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "View run" not in quiet.stdout + quiet.stderr  # MLflow's own link opens the GenAI layout: not printed
    (link,) = [line for line in quiet.stdout.splitlines() if line.startswith("run page of ")]
    assert link.startswith(f"run page of cpu 1x1 measured fix_hp · faster_rcnn: {mlflow_server.uri}/#/experiments/")
    assert link.endswith("?workflowType=machine_learning") and "alice" not in link


def test_an_import_killed_mid_row_leaves_a_run_the_next_import_completes(mlflow_server: MlflowServer) -> None:
    import mlflow
    from mlflow.entities import ViewType

    proxy = FlakyProxy(mlflow_server.uri)
    proxy.hold = "/runs/log-batch"  # the first row's run is created, then its values never arrive
    try:
        job = subprocess.Popen([sys.executable, "-m", "suite", "import-published"], cwd=REPO,
                               env={**os.environ, "MLFLOW_TRACKING_URI": proxy.uri},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proxy.held == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proxy.held == 1
        job.kill()  # SIGKILL: nothing of the suite's own clean-up runs
        job.wait()
    finally:
        proxy.released.set()
        proxy.close()
    (orphan,) = search_runs(mlflow_server.uri)
    assert orphan.info.status == "RUNNING"
    assert orphan.data.tags[names.TAG_SOURCE] == "published" and orphan.data.tags[names.TAG_PUBLISHED_KEY]
    again = run_cli("import-published", env={"MLFLOW_TRACKING_URI": mlflow_server.uri})
    assert again.returncode == 0, again.stderr[-3000:]
    client = mlflow.MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("accelbench")
    active = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
    published = [r for r in active if r.data.tags.get(names.TAG_SOURCE) == "published"]
    assert len(published) == 35 and {r.info.status for r in published} == {"FINISHED"}
    assert orphan.info.run_id not in {r.info.run_id for r in published}  # replaced, not left beside


def test_a_run_neither_mlflow_nor_the_journal_could_take_says_so_and_exits_4(tmp_path: Path,
                                                                           mlflow_server: MlflowServer) -> None:
    spool = tmp_path / "full-spool"
    if not _mount_available(spool):
        pytest.skip("cannot mount a small tmpfs here (needs root or user namespaces)")
    proxy = FlakyProxy(mlflow_server.uri)
    proxy.refuse = "/runs/log-batch"  # the server is lost once the run has started; the 4 KiB spool fills later
    try:
        command = (f"mount -t tmpfs -o size=4k tmpfs '{spool}' && exec '{sys.executable}' -m suite "
                   f"{' '.join(shlex.quote(w) for w in LIGHT_RUN)}")
        result = subprocess.run(["unshare", "-rm", "sh", "-c", command], cwd=REPO, capture_output=True, text=True,
                                timeout=600, env={**os.environ, "ACCELBENCH_SPOOL": str(spool),
                                                  "MLFLOW_TRACKING_URI": proxy.uri})
    finally:
        proxy.close()
    assert result.returncode == 4, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("faster_rcnn"))
    assert "FINISHED, NOT RECORDED" in row and row.split()[-1]  # the figures and the run id survive here
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("accelbench: run not recorded: faster_rcnn cpu 1x1: MLflow failed, and the spool journal")
    assert "the table above is the only complete copy of its figures" in last


def test_three_imports_at_once_on_a_new_sqlite_store_all_succeed(tmp_path: Path) -> None:
    """Making a client of a new SQLite file creates its schema: three at once raced (alembic) and two exited 1."""
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    done = _together(["import-published"], ["import-published"], ["import-published"],
                     env={"MLFLOW_TRACKING_URI": uri})
    assert all(d.returncode == 0 for d in done), [d.stderr[-1500:] for d in done]
    assert sorted(d.stdout.split("created ")[1].split(",")[0] for d in done) == ["0", "0", "35"]
