"""MFU from counted training FLOPs and a configured peak, the regression gate's CLI, and the event-log rules, on a
real CPU run and on runs recorded by the real tracker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest

from suite import names
from suite.engine.compliance import check_events, check_log
from tests.helpers import LIGHT_RUN, invoke, record_run, search_runs

CPU_PEAK = ["--set", "accelerator.peak_tflops={fp32: 0.5}"]  # a made-up CPU peak: the CPU config states none


def test_mfu_time_to_target_and_event_log_rules_on_a_real_convergence_run(
        tracking_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = invoke("-v", *LIGHT_RUN, "--mode", "convergence", "--set", "hp.epochs=2",
                    "--set", "train.targets={bbox: 0.0}", *CPU_PEAK)
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "training FLOPs per image" in result.stderr and "(counted)" in result.stderr
    (run,) = search_runs(tracking_uri)
    flops = float(run.data.params[names.PARAM_FLOPS_PER_IMAGE])
    assert 1e8 < flops < 1e12  # Faster R-CNN MobileNetV3 at 128 px: GFLOPs per image for forward+backward
    assert run.data.params[names.PARAM_PEAK_TFLOPS] == "0.5"
    # one CPU run carries every figure: both p_core definitions, MFU, time to target, the verdict
    metrics = run.data.metrics
    assert metrics[names.MFU] == pytest.approx(metrics[names.P_CORE] * flops / 0.5e12) and 0 < metrics[names.MFU] < 1
    assert run.data.tags[names.TAG_COMPLIANCE] == "pass" and run.data.tags[names.TAG_CONVERGED] == "true"
    assert 0 < metrics[names.TIME_TO_TARGET] < metrics[names.E2E_TIME]
    assert metrics[names.P_CORE_UNSYNCED] >= metrics[names.P_CORE] > 0

    # the same model and batch again: the FLOPs come from the cache
    with caplog.at_level(logging.INFO, logger="suite"):
        again = invoke(*LIGHT_RUN, *CPU_PEAK)
    assert again.exit_code == 0, again.stderr
    assert any("training FLOPs per image" in r.getMessage() and "(cached)" in r.getMessage() for r in caplog.records)
    assert {r.data.params[names.PARAM_FLOPS_PER_IMAGE] for r in search_runs(tracking_uri)} == {
        run.data.params[names.PARAM_FLOPS_PER_IMAGE]}

    path = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=names.ARTIFACT_EVENTS,
                                                    dst_path=str(tmp_path), tracking_uri=tracking_uri))
    good = invoke("check-log", str(path))
    assert good.exit_code == 0 and good.stdout.strip().endswith("compliant")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert any(e["key"] == names.KEY_TARGET_REACHED for e in events)

    def broken(change) -> list[str]:
        copy = [dict(e, metadata=dict(e.get("metadata") or {})) for e in events]
        change(copy)
        return [rule for rule, problems in check_events(copy).problems.items() if problems]

    assert broken(lambda es: es.pop()) == ["run_once", "paired"]  # no run stop
    assert broken(lambda es: es.remove(next(e for e in es if e["key"] == names.KEY_EVAL_ACCURACY))) == \
        ["eval_per_epoch"]
    assert broken(lambda es: es[3].update(time_ms=0)) == ["time_order"]
    train_end = next(e for e in events if e["key"] == names.KEY_TRAIN and e["event_type"] == names.EV_INTERVAL_END)
    assert broken(lambda es: es[events.index(train_end)]["metadata"].update(steps=99)) == ["images"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(e) for e in events[:-3]) + "\n")
    verdict = check_log(bad)
    assert not verdict.passed and invoke("check-log", str(bad)).exit_code == 1
    assert invoke("check-log", str(tmp_path / "absent.jsonl")).exit_code == 2


def test_a_bad_peak_is_bad_input(tracking_uri: str) -> None:
    bad = invoke(*LIGHT_RUN, "--set", "accelerator.peak_tflops={fp32: 0}")
    assert bad.exit_code == 2 and "peak_tflops" in bad.stderr and search_runs(tracking_uri) == []


def test_check_passes_a_repeat_and_fails_against_a_faster_baseline(tracking_uri: str) -> None:
    measured = {names.P_WHOLE: 3.1, names.P_TRAIN: 3.5, names.P_CORE: 3.6, names.E2E_TIME: 20.0, names.MEM: 1.3}
    common = {"vendor": "cpu", "topology": "1x1", "case": "retinanet", "precision": "fp32"}
    candidate = record_run(**common, metrics=measured, config_hash="aaaaaaaaaaaa")
    repeat = record_run(**common, metrics=measured, config_hash="aaaaaaaaaaaa")
    same = invoke("check", candidate, "--against", repeat)
    assert same.exit_code == 0, same.stdout + same.stderr
    assert "1 run(s) pooled" in same.stdout and "REGRESSION" not in same.stdout

    faster = record_run(**common, metrics={k: v * 1.2 for k, v in measured.items() if k.startswith("p_")})
    slower = invoke("check", candidate, "--against", faster)
    assert slower.exit_code == 1, slower.stdout + slower.stderr
    assert slower.stdout.count("REGRESSION") == 3 and "-16.7%" in slower.stdout
    assert "3 regression(s)" in slower.stderr

    assert invoke("check", "no-such-run", "--against", faster).exit_code == 2
    assert invoke("check", candidate, "--against", "cpu/yolo/1x1").exit_code == 2


def test_check_against_a_published_row_uses_its_timing(store_with_published: str) -> None:
    candidate = record_run(vendor="nvidia_h100", topology="1x1", metrics={
        "p_whole": 42.17, "p_train": 42.17, "p_core": 44.13, "p_core_unsynced": 69.65, "mem": 29.1})
    result = invoke("check", candidate, "--against", "nvidia_a100/faster_rcnn/1x1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "against published baseline" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("p_core (host clock)"))
    assert "45" in row and "69.65" in row and "+54.8%" in row
