"""MFU from counted training FLOPs and a configured peak, on a real CPU run."""

from __future__ import annotations

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


def test_no_peak_means_no_mfu_rather_than_a_guess(tracking_uri: str) -> None:
    result = run_cli("run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = search_runs(tracking_uri)
    assert names.MFU not in run.data.metrics and names.PARAM_PEAK_TFLOPS not in run.data.params
    bad = run_cli("run", "--case", "retinanet", "--vendor", "cpu", "--synthetic", *TINY,
                  "--set", "accelerator.peak_tflops={fp32: 0}")
    assert bad.returncode == 2 and "peak_tflops" in bad.stderr
