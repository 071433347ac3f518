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
from suite.colors import accelerator_color
from suite.engine.events import read_events
from tests.helpers import (
    LIGHT,
    LIGHT_RUN,
    REPO,
    TINY,
    artifact_paths,
    invoke,
    mlflow_project_run,
    run_cli,
    search_runs,
)

CASES = ("faster_rcnn", "retinanet", "mask_rcnn")


def _check_throughput_order(metrics: dict[str, float]) -> None:
    assert metrics[names.P_WHOLE] <= metrics[names.P_TRAIN] <= metrics[names.P_CORE]
    # the host-clock window ends before the closing synchronize, so it is never longer than ours
    assert metrics[names.P_CORE_UNSYNCED] >= metrics[names.P_CORE]


@pytest.mark.parametrize("case", CASES)
def test_smoke_run_is_one_finishedmlflow_project_run(case: str, tracking_uri: str) -> None:
    """Each case's own model (ResNet-50 at 128 px), through the CLI in this process."""
    result = invoke("run", "--case", case, "--vendor", "cpu", "--synthetic", *TINY)
    assert result.exit_code == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert "lr=0.01" in run.data.tags[names.TAG_FIX_HP]  # the tiny run's settings are not the case's own
    assert run.info.run_name == f"cpu 1x1 measured fix_hp · {case}"
    assert run.data.tags[names.TAG_RUN_COLOR] == accelerator_color("cpu")
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["bs"] == "2" and params["lr"] == "0.01" and params["global_bs"] == "2"
    assert params["precision"] == "fp32" and params["mode"] == "smoke" and params["hp.momentum"] == "0.9"
    assert tags[names.TAG_CASE] == case and tags[names.TAG_VENDOR] == "cpu" and tags[names.TAG_TOPOLOGY] == "1x1"
    assert tags[names.TAG_SOURCE] == "measured" and tags[names.TAG_STATUS] == "FINISHED"
    assert tags[names.TAG_PRECISION] == "fp32" and tags[names.TAG_WORLD_SIZE] == "1"
    assert tags[names.TAG_WEIGHTS] == "random"
    # The cpu vendor states no peak: no MFU rather than a guess.
    assert names.MFU not in metrics and names.PARAM_PEAK_TFLOPS not in params
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

    artifacts = artifact_paths(tracking_uri, run.info.run_id)
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
    command = " ".join([shlex.quote(sys.executable), "-m", "suite", *(shlex.quote(w) for w in LIGHT_RUN),
                        "--mode", "throughput", "--set", "train.warmup_steps=1", "--set", "train.steps=2",
                        "--set", "eval.initial=true"])  # throughput mode evaluates nothing, not even this
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
    assert names.MAP not in metrics and metrics[names.EVAL_TIME] == 0 and names.INIT_EVAL_TIME not in metrics
    _check_throughput_order(metrics)
    assert run.data.params["max_steps"] == "3" and run.data.params["epochs"] == "null"


def test_the_untrained_model_is_evaluated_inside_init_where_the_config_asks(tracking_uri: str) -> None:
    """`eval.initial` (on in every reference config): an evaluation before training, inside init and e2e_time and
    outside the measured phase, as the published runs had it; its mAP is epoch 0 of the curve."""
    result = invoke(*LIGHT_RUN, "--set", "eval.initial=true")
    assert result.exit_code == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    metrics = run.data.metrics
    history = mlflow.MlflowClient(tracking_uri).get_metric_history(run.info.run_id, names.MAP)
    assert [m.step for m in history] == [0, 1]
    assert 0 < metrics[names.INIT_EVAL_TIME] < metrics[names.INIT_TIME]
    assert metrics[names.E2E_TIME] > metrics[names.INIT_TIME] + metrics[names.TRAIN_TIME]
    assert metrics[names.EVAL_TIME] < metrics[names.TRAIN_TIME]  # only the final evaluation is in the phase
    # the published Mask R-CNN pages' p_whole: the clock from the run's start
    assert metrics[names.P_WHOLE_WITH_INIT] == pytest.approx(
        metrics[names.IMAGES] / (metrics[names.INIT_TIME] + metrics[names.TRAIN_TIME]))
    assert run.data.tags[names.TAG_COMPLIANCE] == "pass"
    events_file = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="events.jsonl",
                                                           tracking_uri=tracking_uri))
    order = [(e["key"], e["event_type"], (e.get("metadata") or {}).get("epoch_num"))
             for e in read_events(events_file)]
    init_end = order.index(("init", "INTERVAL_END", None))
    assert order.index(("eval", "INTERVAL_START", 0)) < order.index(("eval_accuracy", "POINT_IN_TIME", 0)) < init_end
    assert init_end < order.index(("train", "INTERVAL_START", None))


def test_a_weights_file_changes_what_the_run_records_only_in_its_values(tmp_path: Path, tracking_uri: str) -> None:
    """The reference graph with a ResNet-50 weights file and without one: the same trainable parameters, trainable
    stages and training FLOPs per image in the record; where the frozen statistics came from says which ran."""
    import torch
    from torchvision.models import resnet50

    plain = tmp_path / "resnet50.pth"
    torch.save(resnet50().state_dict(), plain)
    weights = _named_by_hash(plain)
    common = ["run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", *TINY,
              "--set", "accelerator.peak_tflops={fp32: 1.0}"]  # a stated peak: the run counts its FLOPs
    for extra in ([], ["--set", f"model.backbone_weights={weights}"]):
        result = invoke(*common, *extra)
        assert result.exit_code == 0, result.stderr[-3000:]
    with_file, without = sorted(search_runs(tracking_uri), key=lambda r: r.data.params["model.backbone_weights"])
    assert without.data.params["model.backbone_weights"] == "null"
    for key in (names.PARAM_TRAINABLE_PARAMETERS, names.PARAM_TRAINABLE_LAYERS, names.PARAM_FLOPS_PER_IMAGE):
        assert without.data.params[key] == with_file.data.params[key], key
    assert without.data.params[names.PARAM_TRAINABLE_LAYERS] == "3"
    assert without.data.tags[names.TAG_WEIGHTS] == "random"
    assert with_file.data.tags[names.TAG_WEIGHTS].startswith(f"file:{weights.name} sha256:")
    assert without.data.params[names.PARAM_FROZEN_STATISTICS] == "calibrated on 8 training images (seed 0)"
    assert with_file.data.params[names.PARAM_FROZEN_STATISTICS] == "from the weights file"
    assert names.MFU in without.data.metrics and names.MFU in with_file.data.metrics


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "dataloader-worker"])
def test_failure_during_run_is_recorded_as_failed(tmp_path: Path, tracking_uri: str, workers: int) -> None:
    """An image that breaks mid-training (its header is whole, its data cut short, so the checks before the run
    pass) ends the run FAILED, with a reason naming the file, on the console in one line, and what was measured so
    far; the traceback is in the run's log file."""
    root = tmp_path / "data"
    assert invoke("make-data", "--out", str(root), "--train", "6", "--val", "2").exit_code == 0
    annotations = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    for image in annotations["images"][1:]:
        path = root / "train2017" / image["file_name"]
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    result = run_cli("run", "--case", "faster_rcnn", "--vendor", "cpu", "--data-root", str(root), *LIGHT,
                     "--set", "hp.bs=1", "--set", "train.max_steps=6", "--set", "data.aspect_ratio_group_factor=-1",
                     "--set", f"data.workers={workers}")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("accelbench: run failed: ") and "train2017/0000000000" in last, last
    assert ": cannot decode the image (RuntimeError: decode_jpeg" in last, last
    assert last.endswith("Image is incomplete or truncated)"), last
    (run,) = search_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_STATUS] == "FAILED"
    failure = run.data.tags[names.TAG_FAILURE]
    assert failure.startswith("ImageError: ") and "train2017/0000000000" in failure and "\n" not in failure
    assert names.E2E_TIME in run.data.metrics
    assert "events.jsonl" in artifact_paths(tracking_uri, run.info.run_id)
    log = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="rank0.log",
                                                   dst_path=str(tmp_path / "log")))
    assert "Traceback (most recent call last)" in log.read_text()


def test_bad_input_creates_no_run(tmp_path: Path, tracking_uri: str) -> None:
    result = invoke("run", "--case", "faster_rcnn", "--vendor", "cpu", "--data-root", str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"accelbench: error: data root {tmp_path / 'missing'} does not exist or is " \
                                    "not a directory"
    result = invoke("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic", "--precision", "tf32")
    assert result.exit_code == 2 and "not supported by the cpu adapter" in result.stderr
    weights = tmp_path / "resnet50-0676ba61.pth"
    weights.write_bytes(b"definitely not the published file")
    result = invoke("run", "--case", "faster_rcnn", "--vendor", "cpu", "--synthetic",
                     "--set", f"model.backbone_weights={weights}")
    assert result.exit_code == 2 and "but its name says 0676ba61" in result.stderr
    assert search_runs(tracking_uri) == []


def _named_by_hash(path: Path) -> Path:
    """Rename a file torchvision-style, `name-<sha256 prefix>.pth`, so its name's hash check passes."""
    import hashlib

    named = path.with_name(f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}.pth")
    path.rename(named)
    return named


def test_inputs_that_validate_but_cannot_work_are_refused_before_a_run(tmp_path: Path, tracking_uri: str) -> None:
    import torch
    from torchvision.models import resnet18

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04 not a pickle, not a zip")
    wrong = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), wrong)
    root = tmp_path / "data"
    assert invoke("make-data", "--out", str(root), "--train", "6", "--val", "2").exit_code == 0
    train_file = root / "annotations" / "instances_train2017.json"
    good = train_file.read_text()
    base = ["run", "--case", "faster_rcnn", "--vendor", "cpu", "--set", "data.workers=0"]
    cases = [
        ([*base, "--synthetic", "--set", f"model.backbone_weights={_named_by_hash(garbage)}"],
         "is not a torch checkpoint"),
        ([*base, "--synthetic", "--set", f"model.backbone_weights={_named_by_hash(wrong)}"],
         "is not a ResNet-50 state dict: Error(s) in loading state_dict for ResNet: Missing key(s)"),
        ([*base, "--synthetic", "--set", "model.detector_kwargs={rpn_pre_nms_top_n_train: -5}"],
         "model.detector_kwargs.rpn_pre_nms_top_n_train: must be an integer from 1 to 2147483647"),
        ([*base, "--synthetic", "--set", "model.detector_kwargs={image_mean: [1, 2]}"],
         "model.detector_kwargs.image_mean: must be null or a list of 3 numbers > -inf"),
        ([*base, "--data-root", str(root), "--set", "model.num_classes=3"],
         "category ids [37, 38, 72] are outside the model's 3 classes (model.num_classes: ids must be 0..2)"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.stderr[-2000:])
        assert message in result.stderr and result.stderr.count("\n") == 1, (message, result.stderr[-2000:])
    document = json.loads(good)
    (root / "train2017" / document["images"][1]["file_name"]).unlink()
    result = invoke(*base, "--data-root", str(root))
    assert result.exit_code == 2 and f"1 of 6 images are not in {root / 'train2017'}/" in result.stderr, \
        result.stderr[-2000:]
    assert search_runs(tracking_uri) == []


def test_smoke_prints_the_table_of_what_ran_when_a_later_case_is_bad_input(tracking_uri: str) -> None:
    # mobilenet_v3_large is a faster_rcnn backbone only: retinanet's config resolves, its checks refuse it
    result = invoke("smoke", "--cases", "faster_rcnn,retinanet", *LIGHT)
    assert result.exit_code == 2, result.stderr[-3000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("faster_rcnn ")]
    assert "FINISHED" in row
    assert result.stderr.strip().splitlines()[-1].startswith(
        "accelbench: error: model.backbone: backbone 'mobilenet_v3_large' is not available for retinanet")
    (run,) = search_runs(tracking_uri)  # the refused case left no run
    assert run.data.tags[names.TAG_CASE] == "faster_rcnn" and run.info.status == "FINISHED"
    unknown = invoke("smoke", "--cases", "faster_rcnn,yolo", *TINY)
    assert unknown.exit_code == 2 and "unknown case 'yolo'" in unknown.stderr
    assert len(search_runs(tracking_uri)) == 1  # nothing started


def test_smoke_names_each_case_as_it_starts_and_says_what_to_do_next(tracking_uri: str) -> None:
    result = invoke("smoke", "--cases", "faster_rcnn", *LIGHT, console=True)
    assert result.exit_code == 0, result.stderr[-3000:]
    first = result.stderr.strip().splitlines()[0]
    assert "smoke 1/1: faster_rcnn on cpu, synthetic data" in first, first
    after_table = result.stdout.split("FINISHED", 1)[1]
    assert "mAP is 0 here by design" in after_table
    assert "accelbench ui " in after_table and "accelbench compare " in after_table


def _mlflow_created_run(tracking_uri: str, stderr: str):
    (run,) = search_runs(tracking_uri)
    # The run MLflow announced is the one the suite recorded into (attached, not a second run).
    assert f"=== Run (ID '{run.info.run_id}') succeeded ===" in stderr
    assert run.info.status == "FINISHED"
    assert {names.P_WHOLE, names.P_TRAIN, names.P_CORE, names.MAP, names.E2E_TIME, names.MEM} <= set(run.data.metrics)
    assert run.data.params["bs"] and run.data.params["lr"]
    return run


def test_mlproject_smoke_entry_point(tracking_uri: str, tmp_path: Path) -> None:
    result = mlflow_project_run("-e", "smoke", "-P", "case=retinanet")
    assert result.returncode == 0, result.stderr[-3000:]
    run = _mlflow_created_run(tracking_uri, result.stderr)
    assert run.data.tags.get("mlflow.project.entryPoint") == "smoke"
    assert run.data.tags[names.TAG_CASE] == "retinanet" and run.data.tags[names.TAG_MODE] == "smoke"
    # without --experiment-name, mlflow run records into "Default": compare finds it there, and says where from
    assert mlflow.MlflowClient().get_experiment(run.info.experiment_id).name == "Default"
    compared = invoke("compare", "--case", "retinanet", "--source", "measured", "--out", str(tmp_path / "out"))
    assert compared.exit_code == 0, compared.stderr
    assert "runs compared, by experiment: Default 1" in compared.stdout
    comparison = mlflow.MlflowClient().get_run(compared.stdout.strip().splitlines()[-1].split()[-1])
    assert comparison.data.metrics["compared_runs"] == 1
    assert mlflow.MlflowClient().get_experiment(comparison.info.experiment_id).name == "accelbench"
    only = invoke("compare", "--case", "retinanet", "--search-experiments", "accelbench", "--no-record",
                  "--out", str(tmp_path / "only"))
    assert only.exit_code == 2 and "in experiment(s) accelbench" in only.stderr


def test_mlproject_main_entry_point(tracking_uri: str) -> None:
    result = mlflow_project_run("-e", "main", "-P", "case=retinanet", "-P", "vendor=cpu", "-P", "synthetic=true",
                         "-P", "overrides=train.max_steps=2 data.workers=0")
    assert result.returncode == 0, result.stderr[-3000:]
    run = _mlflow_created_run(tracking_uri, result.stderr)
    assert run.data.tags.get("mlflow.project.entryPoint") == "main"
    assert run.data.metrics[names.STEPS] == 2
    assert run.data.params["train.max_steps"] == "2"


def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on() -> None:
    # No network at run time: MLflow would otherwise contact its telemetry host on the first tracking call.
    # the entry points (the CLI, the tracker, the results API) apply the client's defaults before MLflow loads
    probe = ("import os, sys; from suite.tracking.client import configure; configure(); "
             "import mlflow.telemetry.utils as t; "
             "sys.stdout.write(f'{t.is_telemetry_disabled()} {os.environ[\"MLFLOW_DISABLE_TELEMETRY\"]}')")
    # MLflow also stays quiet under CI or pytest variables; take them away so only the suite's default counts.
    ci_markers = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS")
    env = {k: v for k, v in os.environ.items() if k not in ci_markers}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.stdout == "True true", result.stderr
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert result.stdout == "False false", result.stderr  # an explicit choice is the user's to make


def test_synthetic_data_with_an_unwritable_cache_is_a_warning_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"  # root writes through permissions: a file where the cache would go
    blocker.write_text("a file where the cache folder would go")
    done = run_cli(*LIGHT_RUN, env={"ACCELBENCH_CACHE": str(blocker)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"synthetic dataset cache {blocker}/synthetic is not writable" in done.stderr


def test_an_experiment_name_mlflow_would_refuse_is_refused_before_anything_runs(tracking_uri: str) -> None:
    """Was: trained, then "the tracking server was unreachable", exit 0, and a sync failing on every retry."""
    from mlflow.utils.validation import MAX_EXPERIMENT_NAME_LENGTH

    from suite.config import MAX_EXPERIMENT_NAME_LENGTH as OURS

    assert OURS == MAX_EXPERIMENT_NAME_LENGTH
    name = "x" * (MAX_EXPERIMENT_NAME_LENGTH + 100)
    for args in ([*LIGHT_RUN, "--experiment", name], [*LIGHT_RUN, "--set", f"tracking.experiment={name}"],
                 ["matrix", "--vendor", "cpu", "--cases", "faster_rcnn", "--synthetic", "--experiment", name],
                 ["compare", "--experiment", name], ["import-published", "--experiment", name]):
        result = invoke(*args)
        assert result.exit_code == 2, (args[0], result.stderr[-2000:])
        assert result.stderr.count("\n") == 1 and "500" in result.stderr, result.stderr[-500:]
    assert search_runs(tracking_uri) == []
