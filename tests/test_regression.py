"""The regression gate (`accelbench check`) over runs recorded by the real tracker in a real SQLite store."""

from __future__ import annotations

import pytest

from suite import names
from tests.helpers import invoke, record_run

CONFIG_HASH = "0123456789ab"


def _recorded_run(p_core: float, *, config_hash: str = CONFIG_HASH) -> str:
    """A finished measured run of one config, recorded the way the runner records one."""
    return record_run(vendor="cpu", topology="1x1", case="retinanet", precision="fp32", config_hash=config_hash,
                      metrics={names.P_CORE: p_core, names.P_TRAIN: p_core * 0.9, names.P_WHOLE: p_core * 0.9})


@pytest.fixture
def baseline_repeats(tracking_uri: str) -> list[str]:
    return [_recorded_run(p_core) for p_core in (100.0, 101.0, 99.0)]


def _row(stdout: str, metric: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(metric + " "))


def test_a_slower_candidate_of_the_same_config_is_a_regression(baseline_repeats: list[str]) -> None:
    candidate = _recorded_run(70.0)
    result = invoke("check", candidate, "--against", baseline_repeats[0])
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "REGRESSION" in _row(result.stdout, names.P_CORE) and "-30.0%" in _row(result.stdout, names.P_CORE)
    baselines = result.stdout.splitlines()[0].partition(" baseline ")[2]
    assert candidate not in baselines and all(run_id in baselines for run_id in baseline_repeats)
    assert "(3 run(s))" in result.stdout
    # spread of the repeats (2%) is below the default threshold: the default (5%) is used, and says so
    assert "5.0%" in _row(result.stdout, names.P_CORE) and "3 repeats" in _row(result.stdout, names.P_CORE)


def test_a_candidate_within_the_noise_passes(baseline_repeats: list[str]) -> None:
    candidate = _recorded_run(99.5)
    result = invoke("check", candidate, "--against", "cpu/retinanet/1x1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "REGRESSION" not in result.stdout and "(3 run(s))" in result.stdout


def test_identical_repeats_do_not_make_the_gate_fire_on_noise(tracking_uri: str) -> None:
    baseline = [_recorded_run(100.0) for _ in range(2)]
    candidate = _recorded_run(99.9)
    result = invoke("check", candidate, "--against", baseline[0])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "5.0%" in _row(result.stdout, names.P_CORE)


def test_a_run_named_as_its_own_baseline_is_refused(baseline_repeats: list[str]) -> None:
    result = invoke("check", baseline_repeats[0], "--against", baseline_repeats[0])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "its own baseline" in result.stderr and result.stderr.count("\n") == 1
