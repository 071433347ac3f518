"""MFU from counted training FLOPs and a configured peak, on a real CPU run."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite import names
from tests.conftest import TINY, run_cli, search_runs

CPU_PEAK = ["--set", "accelerator.peak_tflops={fp32: 0.5}"]  # a made-up CPU peak: the CPU config states none


def test_mfu_from_counted_flops_and_the_configured_peak(tracking_uri: str) -> None:
    first = run_cli("-v", "run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", *TINY, *CPU_PEAK)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "training FLOPs per image" in first.stderr and "(counted)" in first.stderr
    (run,) = search_runs(tracking_uri)
    flops = float(run.data.params[names.PARAM_FLOPS_PER_IMAGE])
    assert 1e9 < flops < 1e12  # RetinaNet R50-FPN at 128 px: tens of GFLOP per image for forward+backward
    assert run.data.params[names.PARAM_PEAK_TFLOPS] == "0.5"
    metrics = run.data.metrics
    assert metrics[names.MFU] == pytest.approx(metrics[names.P_CORE] * flops / 0.5e12)

    again = run_cli("-v", "run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", *TINY, *CPU_PEAK)
    assert again.returncode == 0 and "(cached)" in again.stderr
    counted = {r.data.params[names.PARAM_FLOPS_PER_IMAGE] for r in search_runs(tracking_uri)}
    assert counted == {run.data.params[names.PARAM_FLOPS_PER_IMAGE]}


def test_a_bad_peak_is_bad_input() -> None:
    bad = run_cli("run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", *TINY,
                  "--set", "accelerator.peak_tflops={fp32: 0}")
    assert bad.returncode == 2 and "peak_tflops" in bad.stderr


def test_check_passes_a_repeat_and_fails_against_a_faster_baseline(tracking_uri: str) -> None:
    from tests.test_results import _record

    for _ in range(2):
        result = run_cli("run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", *TINY)
        assert result.returncode == 0, result.stderr[-3000:]
    first, second = sorted(search_runs(tracking_uri), key=lambda r: r.info.start_time)
    # The cpu vendor states no peak: no MFU rather than a guess.
    assert names.MFU not in first.data.metrics and names.PARAM_PEAK_TFLOPS not in first.data.params
    # Two-step CPU runs differ by 10-20% from run to run: a wide threshold passes a repeat of the same config,
    # and the candidate is never pooled with its baseline.
    same = run_cli("check", first.info.run_id, "--against", second.info.run_id, "--threshold", "0.6")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "(1 run(s))" in same.stdout and "REGRESSION" not in same.stdout

    faster = {k: v * 1.2 for k, v in first.data.metrics.items() if k in (names.P_WHOLE, names.P_TRAIN, names.P_CORE)}
    baseline = _record(tracking_uri, vendor="cpu", topology="1x1", case="retinanet", precision="fp32",
                       metrics=faster)
    slower = run_cli("check", first.info.run_id, "--against", baseline)
    assert slower.returncode == 1, slower.stdout + slower.stderr
    assert slower.stdout.count("REGRESSION") == 3 and "-16.7%" in slower.stdout
    assert "3 regression(s)" in slower.stderr

    assert run_cli("check", "no-such-run", "--against", baseline).returncode == 2
    assert run_cli("check", first.info.run_id, "--against", "cpu/yolo/1x1").returncode == 2


def test_check_against_a_published_row_uses_its_timing(tracking_uri: str) -> None:
    from suite.published import import_published, load_published
    from tests.test_results import _record

    import_published(load_published(["nvidia_a100"]))
    candidate = _record(tracking_uri, vendor="nvidia_h100", topology="1x1", metrics={
        "p_whole": 42.17, "p_train": 42.17, "p_core": 44.13, "p_core_unsynced": 69.65, "mem": 29.1})
    result = run_cli("check", candidate, "--against", "nvidia_a100/faster_rcnn/1x1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "against published baseline" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("p_core (host clock)"))
    assert "45" in row and "69.65" in row and "+54.8%" in row


def test_event_log_rules_on_a_real_convergence_run(tracking_uri: str, tmp_path) -> None:
    import json

    import mlflow

    from suite.compliance import check_events, check_log

    result = run_cli("run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", "--mode", "convergence", *TINY,
                     "--set", "hp.epochs=2", "--set", "train.targets={bbox: 0.0}", *CPU_PEAK)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    # one CPU run carries every figure of the issue: both p_core definitions, MFU, time to target, the verdict
    assert run.data.tags[names.TAG_COMPLIANCE] == "pass" and run.data.tags[names.TAG_CONVERGED] == "true"
    metrics = run.data.metrics
    assert 0 < metrics[names.TIME_TO_TARGET] < metrics[names.E2E_TIME]
    assert metrics[names.P_CORE_UNSYNCED] >= metrics[names.P_CORE] > 0 and 0 < metrics[names.MFU] < 1
    path = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=names.ARTIFACT_EVENTS,
                                                    dst_path=str(tmp_path), tracking_uri=tracking_uri))
    good = run_cli("check-log", str(path))
    assert good.returncode == 0 and good.stdout.strip().endswith("compliant")
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
    assert not verdict.passed and run_cli("check-log", str(bad)).returncode == 1
    assert run_cli("check-log", str(tmp_path / "absent.jsonl")).returncode == 2
