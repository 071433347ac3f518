"""Real runs through the real CLI into a real MLflow SQLite store: all three cases, throughput mode, failures."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from suite import names
from suite.events import read_events
from tests.conftest import REPO, TINY, run_cli, search_runs

CASES = ("faster_rcnn", "retinanet", "mask_rcnn")


def _artifact_paths(tracking_uri: str, run_id: str) -> set[str]:
    client = mlflow.MlflowClient(tracking_uri)
    found, stack = set(), [None]
    while stack:
        for item in client.list_artifacts(run_id, stack.pop()):
            (stack.append(item.path) if item.is_dir else found.add(item.path))
    return found


def _check_throughput_order(metrics: dict[str, float]) -> None:
    assert metrics[names.P_WHOLE] <= metrics[names.P_TRAIN] <= metrics[names.P_CORE]
    # the host-clock window ends before the closing synchronize, so it is never longer than ours
    assert metrics[names.P_CORE_UNSYNCED] >= metrics[names.P_CORE]


@pytest.mark.parametrize("case", CASES)
def test_smoke_run_is_one_finished_mlflow_run(case: str, tracking_uri: str) -> None:
    result = run_cli("run", "--case", case, "--vendor", "cpu", "--synthetic", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"{case}/cpu/1x1"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["bs"] == "2" and params["lr"] == "0.01" and params["global_bs"] == "2"
    assert params["precision"] == "fp32" and params["mode"] == "smoke" and params["hp.momentum"] == "0.9"
    assert tags[names.TAG_CASE] == case and tags[names.TAG_VENDOR] == "cpu" and tags[names.TAG_TOPOLOGY] == "1x1"
    assert tags[names.TAG_SOURCE] == "measured" and tags[names.TAG_STATUS] == "FINISHED"
    assert tags[names.TAG_PRECISION] == "fp32" and tags[names.TAG_WORLD_SIZE] == "1"
    assert tags[names.TAG_WEIGHTS] == "random"
    assert tags["env.torch"] and tags["env.python"] and tags["math.autocast"] == "off"
    assert len(tags[names.TAG_CONFIG_HASH]) == 12
    for metric in (names.E2E_TIME, names.P_WHOLE, names.P_TRAIN, names.P_CORE, names.MAP, names.MEM,
                   names.MEM_TOTAL):
        assert metric in metrics, metric
    assert (names.MAP_SEGM in metrics) is (case == "mask_rcnn")
    assert metrics[names.IMAGES] == 4 and metrics[names.STEPS] == 2  # 2 steps x bs 2, counted exactly
    _check_throughput_order(metrics)
    assert metrics[names.E2E_TIME] > metrics[names.TRAIN_TIME] > metrics[names.CORE_TIME] > 0
    history = mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, names.LOSS)
    assert [m.step for m in history] == [1, 2]

    artifacts = _artifact_paths(tracking_uri, run.info.run_id)
    assert {"config/resolved.yaml", "config/provenance.yaml", "environment.json", "events.jsonl", "rank0.log",
            "eval.json"} <= artifacts
    events_file = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="events.jsonl",
                                                           tracking_uri=tracking_uri))
    events = read_events(events_file)
    assert [e["key"] for e in events if e["event_type"] == "INTERVAL_START"][:2] == ["run", "init"]
    assert events[-1]["key"] == "run" and events[-1]["metadata"]["status"] == "FINISHED"
    assert f"{case}  cpu" in result.stdout and "FINISHED" in result.stdout


def test_throughput_mode_times_only_the_budget(tracking_uri: str) -> None:
    # Started through `exec` after a pause, as a wrapper script would: the pause is not the run's e2e_time.
    pause = 3.0
    command = " ".join([shlex.quote(sys.executable), "-m", "suite", "run", "--case", "retinanet", "--vendor", "cpu",
                        "--synthetic", "--mode", "throughput", *TINY, "--set", "train.warmup_steps=1",
                        "--set", "train.steps=2"])
    began = time.time()
    result = subprocess.run(["bash", "-c", f"sleep {pause}; exec {command}"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    elapsed = time.time() - began
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    metrics = run.data.metrics
    assert metrics[names.E2E_TIME] < elapsed - pause
    assert run.info.status == "FINISHED"
    assert metrics[names.STEPS] == 3 and metrics[names.IMAGES] == 4  # the warm-up step's images are not counted
    assert names.MAP not in metrics and metrics[names.EVAL_TIME] == 0
    _check_throughput_order(metrics)
    assert run.data.params["max_steps"] == "3" and run.data.params["epochs"] == "null"


def test_failure_during_run_is_recorded_as_failed(tmp_path: Path, tracking_uri: str) -> None:
    """A corrupt image met mid-training ends the run FAILED, with the reason and what was measured so far."""
    root = tmp_path / "data"
    assert run_cli("make-data", "--out", str(root), "--train", "6", "--val", "2").returncode == 0
    annotations = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    for image in annotations["images"][1:]:
        (root / "train2017" / image["file_name"]).write_bytes(b"not a jpeg")
    result = run_cli("run", "--case", "faster_rcnn", "--vendor", "cpu", "--data-root", str(root),
                     "--set", "hp.bs=1", "--set", "data.workers=0", "--set", "train.max_steps=6",
                     "--set", "data.aspect_ratio_group_factor=-1")
    assert result.returncode == 1
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_STATUS] == "FAILED"
    assert "RuntimeError" in run.data.tags[names.TAG_FAILURE]
    assert names.E2E_TIME in run.data.metrics
    assert "events.jsonl" in _artifact_paths(tracking_uri, run.info.run_id)


def test_bad_input_creates_no_run(tmp_path: Path, tracking_uri: str) -> None:
    result = run_cli("run", "--case", "faster_rcnn", "--vendor", "cpu", "--data-root", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"accelbench: error: data root {tmp_path / 'missing'} does not exist or is " \
                                    "not a directory"
    result = run_cli("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", "--precision", "tf32")
    assert result.returncode == 2 and "not supported by the cpu adapter" in result.stderr
    weights = tmp_path / "resnet50-0676ba61.pth"
    weights.write_bytes(b"definitely not the published file")
    result = run_cli("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic",
                     "--set", f"model.backbone_weights={weights}")
    assert result.returncode == 2 and "but its name says 0676ba61" in result.stderr
    assert search_runs(tracking_uri) == []


def _mlflow_run(*args: str) -> subprocess.CompletedProcess[str]:
    """`mlflow run` runs the entry point with the first `python` on PATH: this venv's, as for a user inside it."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(bin_dir / "mlflow"), "run", str(REPO), *args, "--env-manager", "local"],
                          capture_output=True, text=True, timeout=600, env=env)


def _mlflow_created_run(tracking_uri: str, stderr: str):
    (run,) = search_runs(tracking_uri)
    # The run MLflow announced is the one the suite recorded into (attached, not a second run).
    assert f"=== Run (ID '{run.info.run_id}') succeeded ===" in stderr
    assert run.info.status == "FINISHED"
    assert {names.P_WHOLE, names.P_TRAIN, names.P_CORE, names.MAP, names.E2E_TIME, names.MEM} <= set(run.data.metrics)
    assert run.data.params["bs"] and run.data.params["lr"]
    return run


def test_mlproject_smoke_entry_point(tracking_uri: str) -> None:
    result = _mlflow_run("-e", "smoke", "-P", "case=retinanet")
    assert result.returncode == 0, result.stderr[-3000:]
    run = _mlflow_created_run(tracking_uri, result.stderr)
    assert run.data.tags.get("mlflow.project.entryPoint") == "smoke"
    assert run.data.tags[names.TAG_CASE] == "retinanet" and run.data.tags[names.TAG_MODE] == "smoke"


def test_mlproject_main_entry_point(tracking_uri: str) -> None:
    result = _mlflow_run("-e", "main", "-P", "case=retinanet", "-P", "vendor=cpu", "-P", "synthetic=true",
                         "-P", "overrides=train.max_steps=2 data.workers=0")
    assert result.returncode == 0, result.stderr[-3000:]
    run = _mlflow_created_run(tracking_uri, result.stderr)
    assert run.data.tags.get("mlflow.project.entryPoint") == "main"
    assert run.data.metrics[names.STEPS] == 2
    assert run.data.params["train.max_steps"] == "2"


def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on() -> None:
    # No network at run time: MLflow would otherwise contact its telemetry host on the first tracking call.
    probe = ("import os, sys, suite, mlflow.telemetry.utils as t; "
             "sys.stdout.write(f'{t.is_telemetry_disabled()} {os.environ[\"MLFLOW_DISABLE_TELEMETRY\"]}')")
    # MLflow also stays quiet under CI or pytest variables; take them away so only the suite's default counts.
    ci_markers = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS")
    env = {k: v for k, v in os.environ.items() if k not in ci_markers}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.stdout == "True true", result.stderr
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.stdout == "False false", result.stderr  # an explicit choice is the user's to make
