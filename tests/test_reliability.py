"""Faults, for real: stop signals, a diverging loss, a tracking server killed mid-run or down at start (then
`accelbench sync`), and eight runs logging to one `mlflow server` at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import pytest

from suite import names
from suite.launch.mlflow_server import MlflowServer
from suite.tracking.spool import pending, read_journal, spool_root
from suite.tracking.views import VIEW_TAG_PREFIX
from tests.helpers import (
    LIGHT,
    REPO,
    artifact_paths,
    free_port,
    invoke,
    linked_filters,
    metric_history,
    search_runs,
    server_on_copy,
)

CONCURRENT = 4
LONG = ["--set", "train.max_steps=500", "--set", "hp.epochs=100", "--set", "tracking.log_every=1"]
# TINY's 8 training images at bs 2: four steps per epoch, so "epoch 1: 3/" is the third step's progress line.
# Metrics whose values depend only on the seed and the data, not on how fast the machine was.
DETERMINISTIC = (names.LOSS, names.LR, names.MAP, names.STEPS, names.IMAGES, names.EPOCHS_RUN)


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "suite", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _wait_for(job: subprocess.Popen[str], *texts: str, timeout: float = 300) -> list[str]:
    """Read the job's stderr until a line contains all `texts` (the job keeps running)."""
    assert job.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in job.stderr:
        seen.append(line)
        if all(text in line for text in texts):
            return seen
        assert time.monotonic() < deadline, "".join(seen[-30:])
    raise AssertionError(f"the job ended before {texts!r}:\n" + "".join(seen[-30:]))


def _finish(job: subprocess.Popen[str], seen: list[str], timeout: float = 300) -> str:
    try:
        _, rest = job.communicate(timeout=timeout)
    finally:
        if job.poll() is None:
            job.kill()
    return "".join(seen) + rest


def _history(client: mlflow.MlflowClient, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return metric_history(client.tracking_uri, run_id, key)


def _artifacts(client: mlflow.MlflowClient, run_id: str) -> set[str]:
    return artifact_paths(client.tracking_uri, run_id)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_run_killed_with_what_it_measured(signum: int, tracking_uri: str) -> None:
    job = _start("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT, *LONG)
    seen = _wait_for(job, "suite.progress: epoch 1: 3/")
    job.send_signal(signum)
    output = _finish(job, seen)
    assert job.returncode == 128 + signum, output[-3000:]
    reason = "interrupted by SIGINT" if signum == signal.SIGINT else "stopped by SIGTERM"
    assert output.rstrip().splitlines()[-1] == f"accelbench: {reason}"
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "KILLED"
    assert run.data.tags[names.TAG_STATUS] == "KILLED"
    assert run.data.tags[names.TAG_FAILURE] == reason
    assert run.data.metrics[names.STEPS] >= 3 and names.E2E_TIME in run.data.metrics
    client = mlflow.MlflowClient(tracking_uri)
    assert [step for step, _, _ in _history(client, run.info.run_id, names.LOSS)][:2] == [1, 2]
    assert {"events.jsonl", "environment.json", "rank0.log"} <= _artifacts(client, run.info.run_id)


def test_sync_closes_the_run_of_a_process_killed_outright(tracking_uri: str) -> None:
    """SIGKILL cannot be caught: the run stays RUNNING, and its journal lets `accelbench sync` end it FAILED."""
    job = _start("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT, *LONG)
    seen = _wait_for(job, "suite.progress: epoch 1: 3/")
    job.kill()
    _finish(job, seen)
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "RUNNING"
    (folder,) = pending(spool_root())
    result = invoke("sync")
    assert result.exit_code == 0 and f"completed run {run.info.run_id} (FAILED;" in result.stdout, result.stderr
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FAILED" and run.data.tags[names.TAG_STATUS] == "FAILED"
    assert "without finishing" in run.data.tags[names.TAG_FAILURE]
    client = mlflow.MlflowClient(tracking_uri)
    assert [step for step, _, _ in _history(client, run.info.run_id, names.LOSS)][:2] == [1, 2]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs process groups")
def test_sigterm_to_a_multi_process_job_kills_its_run(tracking_uri: str) -> None:
    job = _start("run", "--case", "faster_rcnn", "--vendor", "cpu", "--topology", "1x2", "--synthetic",
                 "--master-port", str(free_port()), *LIGHT, *LONG)
    # Two steps per epoch and rank here: rank 0's first step of epoch 2 is its third.
    seen = _wait_for(job, "rank0 INFO suite.progress: ", "epoch 2: 1/")
    job.send_signal(signal.SIGTERM)
    output = _finish(job, seen)
    assert job.returncode == 128 + signal.SIGTERM, output[-3000:]
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "KILLED"
    assert run.data.tags[names.TAG_FAILURE].startswith("stopped by SIGTERM")
    assert run.data.metrics[names.STEPS] >= 2  # what rank 0 measured before it was stopped


def test_a_diverging_loss_fails_the_run_naming_the_step(tracking_uri: str) -> None:
    result = invoke("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT,
                    "--set", "train.max_steps=6", "--set", "hp.lr=1e20", "--set", "hp.warmup_iters=1",
                    "--set", "tracking.log_every=1")
    assert result.exit_code == 1
    assert result.stderr.rstrip().splitlines()[-1] == "accelbench: run failed: loss became nan at step 2"
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_FAILURE] == "NonFiniteLossError: loss became nan at step 2"
    client = mlflow.MlflowClient(tracking_uri)
    assert [step for step, _, _ in _history(client, run.info.run_id, names.LOSS)] == [1]  # the finite step kept


def test_server_killed_mid_run_then_sync_completes_the_same_run(mlflow_server: MlflowServer) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    job = _start("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT,
                 "--set", "train.max_steps=12", "--set", "hp.epochs=3", "--set", "tracking.log_every=1", env=env)
    seen = _wait_for(job, "suite.progress: epoch 1: 2/")
    mlflow_server.kill()
    output = _finish(job, seen)
    assert job.returncode == 0, output[-3000:]  # training went on to the end
    (folder,) = pending(spool_root())
    assert f"accelbench sync {folder}" in output
    records = read_journal(folder)
    (online_id,) = [r["run_id"] for r in records if r["op"] == "online"]
    assert [r["op"] for r in records].count("offline") == 1

    mlflow_server.start()
    client = mlflow.MlflowClient(mlflow_server.uri)
    assert client.get_run(online_id).info.status == "RUNNING"  # as the outage left it
    result = invoke("sync", env=env)
    assert result.exit_code == 0, result.stderr[-3000:]
    assert f"completed run {online_id} (FINISHED;" in result.stdout
    run = client.get_run(online_id)
    assert run.info.status == "FINISHED" and run.data.tags[names.TAG_SPOOLED] == "true"
    assert run.data.tags[names.TAG_STATUS] == "FINISHED"
    assert run.info.end_time == next(r["end_time_ms"] for r in records if r["op"] == "finish")
    # every value recorded, once, with its step and timestamp; nothing logged before the outage doubled
    journal: dict[str, list[tuple[int, int, float]]] = {}
    for record in (r for r in records if r["op"] == "metrics"):
        for key, value in record["metrics"].items():
            journal.setdefault(key, []).append((record["step"], record["timestamp_ms"], value))
    assert set(run.data.metrics) == set(journal)
    for key, entries in journal.items():
        assert _history(client, online_id, key) == sorted(entries), key
    assert [s for s, _, _ in journal[names.LOSS]] == list(range(1, 13))
    params = {k: v for r in records if r["op"] == "params" for k, v in r["params"].items()}
    assert run.data.params == params
    assert {"events.jsonl", "environment.json", "eval.json", "config/resolved.yaml"} <= _artifacts(client, online_id)
    assert len(search_runs(mlflow_server.uri)) == 1
    assert invoke("sync", env=env).stdout.strip() == f"nothing to sync in {spool_root()}"


def _comparable_tags(tags: dict[str, str]) -> dict[str, str]:
    varying = {names.TAG_SPOOLED, names.TAG_SPOOL_REASON}
    return {k: v for k, v in tags.items() if k not in varying}


def test_a_run_logged_while_the_server_is_down_syncs_to_the_same_record(mlflow_server: MlflowServer) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    args = ("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT, "--set", "train.max_steps=4",
            "--set", "tracking.log_every=1")
    online = invoke(*args, env=env, console=True)
    assert online.exit_code == 0, online.stderr[-3000:]
    mlflow_server.kill()
    offline = invoke(*args, env=env, console=True)
    assert offline.exit_code == 0, offline.stderr[-3000:]
    assert "the tracking server was unreachable; run kept in" in offline.stderr
    (folder,) = pending(spool_root())
    records = read_journal(folder)

    mlflow_server.start()
    result = invoke("sync", str(folder), env=env)
    assert result.exit_code == 0 and " created run " in result.stdout, result.stderr[-3000:]
    client = mlflow.MlflowClient(mlflow_server.uri)
    logged, synced = sorted(search_runs(mlflow_server.uri), key=lambda r: r.info.start_time)
    assert synced.info.run_id in result.stdout
    assert logged.info.status == synced.info.status == "FINISHED"
    assert synced.info.start_time == records[0]["start_time_ms"]
    assert synced.info.experiment_id == logged.info.experiment_id
    assert synced.data.params == logged.data.params
    assert set(synced.data.tags) - set(logged.data.tags) == {names.TAG_SPOOLED, names.TAG_SPOOL_REASON}
    differing = {k for k, v in _comparable_tags(logged.data.tags).items() if synced.data.tags[k] != v}
    # The git tags only if the tree changed meanwhile; the description holds each run's own timings.
    assert differing <= {"mlflow.source.git.commit", names.TAG_GIT_DIRTY, names.TAG_DESCRIPTION}
    # Written offline without the experiment's id, the description got its links when it was synced.
    for run in (synced, logged):
        assert linked_filters(mlflow_server.uri, run.info.experiment_id, run.data.tags[names.TAG_DESCRIPTION])
    journaled = [r["tags"][names.TAG_DESCRIPTION] for r in records if names.TAG_DESCRIPTION in r.get("tags", {})]
    assert "| e2e_time (s) |" in journaled[-1] and "#/experiments/" not in journaled[-1]
    # the offline run waited on a server that was down: it says so, the online one had no stall to record
    assert set(synced.data.metrics) - set(logged.data.metrics) == {names.TRACKING_STALL_TIME}
    assert set(logged.data.metrics) <= set(synced.data.metrics)
    for key in logged.data.metrics:  # metric by metric: the same steps; the same values where not timings
        online_history = _history(client, logged.info.run_id, key)
        synced_history = _history(client, synced.info.run_id, key)
        assert [s for s, _, _ in synced_history] == [s for s, _, _ in online_history], key
        if key in DETERMINISTIC:
            assert [v for _, _, v in synced_history] == pytest.approx([v for _, _, v in online_history], rel=1e-4)
        assert all(synced.info.start_time <= t <= synced.info.end_time for _, t, _ in synced_history), key
    assert [d.dataset.digest for d in synced.inputs.dataset_inputs] == \
        [d.dataset.digest for d in logged.inputs.dataset_inputs]
    assert _artifacts(client, synced.info.run_id) == _artifacts(client, logged.info.run_id)


def test_concurrent_runs_to_one_server(tmp_path: Path, empty_store: Path) -> None:
    """Runs logging to one server at once: every record arrives, none is refused (four runs found MLflow's
    dataset-insert race, which eight did before)."""
    server = server_on_copy(tmp_path / "server", empty_store, workers=4).start()
    env = {"MLFLOW_TRACKING_URI": server.uri}
    try:
        jobs = [_start("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT,
                       "--set", f"hp.seed={seed}", "--set", "tracking.log_every=1",
                       env={**env, "OMP_NUM_THREADS": "1"}) for seed in range(CONCURRENT)]
        outputs = [_finish(job, []) for job in jobs]
        for job, output in zip(jobs, outputs, strict=True):
            assert job.returncode == 0, output[-3000:]
            assert "unreachable" not in output
        runs = search_runs(server.uri)
        client = mlflow.MlflowClient(server.uri)
        said = "\n".join(line for output in outputs for line in output.splitlines() if "WARNING" in line
                         or "ERROR" in line)
        assert len(runs) == CONCURRENT and {r.info.status for r in runs} == {"FINISHED"}, said
        assert "MLflow tracking failed" not in said, said
        assert sorted(r.data.params["hp.seed"] for r in runs) == [str(s) for s in range(CONCURRENT)]
        reference = runs[0]
        for run in runs:
            assert set(run.data.params) == set(reference.data.params), said
            assert set(run.data.metrics) == set(reference.data.metrics) >= {names.P_CORE, names.MAP, names.MEM}, said
            assert set(run.data.tags) == set(reference.data.tags), said
            assert [s for s, _, _ in _history(client, run.info.run_id, names.LOSS)] == [1, 2]
            assert {"events.jsonl", "environment.json", "eval.json"} <= _artifacts(client, run.info.run_id)
            assert run.data.tags[names.TAG_COMPLIANCE] == "pass"
        assert pending(spool_root()) == [] and not spool_root().exists()
    finally:
        server.stop()


def test_views_saved_by_runs_starting_together_on_one_server_all_arrive(tmp_path: Path, empty_store: Path) -> None:
    """Eight runs starting at once save the same views on one experiment: MLflow's store looks each tag up and then
    inserts it, so all but one insert of a tag fail on its unique key; the tag is there, so none of them fails
    (a 4-run CI job went offline on exactly this)."""
    from suite.tracking.views import case_view, save_views

    server = server_on_copy(tmp_path / "server", empty_store, workers=4).start()
    views = [case_view(f"case{i}") for i in range(6)]
    errors: list[str] = []
    saved: list[set[str]] = []
    try:
        for attempt in range(5):  # each a fresh experiment: one attempt lost the race in about half the tries
            experiment_id = mlflow.MlflowClient(server.uri).create_experiment(f"together {attempt}")
            barrier = threading.Barrier(8)

            def save(experiment_id: str = experiment_id, barrier: threading.Barrier = barrier) -> None:
                client = mlflow.MlflowClient(server.uri)
                barrier.wait()
                try:
                    save_views(client, experiment_id, views)
                except Exception as error:  # what the test is about: collected, then shown by the assertion
                    errors.append(str(error)[:300])

            threads = [threading.Thread(target=save) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            saved.append(set(mlflow.MlflowClient(server.uri).get_experiment(experiment_id).tags))
    finally:
        server.stop()
    assert errors == []
    assert all({view.tag()[0] for view in views} <= tags for tags in saved)


def test_a_start_that_fails_after_the_store_made_the_run_is_completed_in_that_run(tmp_path: Path,
                                                                                 empty_store: Path) -> None:
    """The store creates the run, then refuses the next call: the run goes on offline knowing its run, and the sync
    completes that run; no second run, none left RUNNING. The refusal is the store's own: a SQLite trigger that
    fails every insert of an experiment tag (the run's saved views), dropped before the sync."""
    from suite.tracking.client import ensure_experiment

    server = server_on_copy(tmp_path / "server", empty_store)
    database = tmp_path / "server" / "server.db"
    ensure_experiment("accelbench", mlflow.MlflowClient(f"sqlite:///{database}"))
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TRIGGER refuse_tags BEFORE INSERT ON experiment_tags "
                           "BEGIN SELECT RAISE(ABORT, 'experiment tags refused by the test'); END")
    server.start()
    env = {"MLFLOW_TRACKING_URI": server.uri}
    try:
        job = _start("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *LIGHT, env=env)
        output = _finish(job, [])
        assert job.returncode == 0, output[-3000:]
        assert "MLflow tracking failed while starting the run" in output
        (folder,) = pending(spool_root())
        (run_id,) = [r["run_id"] for r in read_journal(folder) if r["op"] == "online"]
        (run,) = search_runs(server.uri)
        assert run.info.run_id == run_id and run.info.status == "FAILED"  # the end-of-run upload was refused too

        with sqlite3.connect(database) as connection:
            connection.execute("DROP TRIGGER refuse_tags")
        result = invoke("sync", env=env)
        assert result.exit_code == 0, result.stderr[-3000:]
        assert f"completed run {run_id} (FINISHED;" in result.stdout
        (run,) = search_runs(server.uri)
        assert run.info.status == "FINISHED" and run.data.tags[names.TAG_SPOOLED] == "true"
        assert names.TAG_FAILURE not in run.data.tags and names.MAP in run.data.metrics
        experiment = mlflow.MlflowClient(server.uri).get_experiment(run.info.experiment_id)
        assert any(key.startswith(VIEW_TAG_PREFIX) and "faster_rcnn" in json.loads(value)["name"]
                   for key, value in experiment.tags.items())
    finally:
        server.stop()


def test_a_stop_signal_waits_for_a_write_to_the_store_to_finish() -> None:
    """SIGTERM landing inside a tracking call is raised when the call returns (suite.interrupts), not inside it,
    where it would leave a SQLite store locked for the run's own record of the stop."""
    code = textwrap.dedent("""
        import os, signal
        from suite import interrupts
        from suite.launch.signals import Interrupted, stop_signals_raise
        stop_signals_raise()
        try:
            with interrupts.shielded():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass  # the handler runs here, and holds the stop
                print("write finished", flush=True)
        except Interrupted as stop:
            print("then:", stop, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == ["write finished", "then: stopped by SIGTERM"], done.stderr
