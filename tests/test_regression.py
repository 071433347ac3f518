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
    assert "3 run(s) pooled: every FINISHED run with the named run's config hash 0123456789ab" in result.stdout
    assert "worse" in _row(result.stdout, names.P_CORE)
    # spread of the repeats (2%) is below the default threshold: the default (5%) is used, and says so
    assert "5.0%" in _row(result.stdout, names.P_CORE) and "3 runs" in _row(result.stdout, names.P_CORE)


def test_a_candidate_within_the_noise_passes(baseline_repeats: list[str]) -> None:
    candidate = _recorded_run(99.5)
    result = invoke("check", candidate, "--against", "cpu/retinanet/1x1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "REGRESSION" not in result.stdout and "3 run(s) pooled" in result.stdout


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


def test_a_baseline_noisier_than_the_cap_is_too_noisy_to_judge_never_ok(tracking_uri: str) -> None:
    """The probe: repeats from 0.24 to 0.70 made a 93% threshold, and a candidate 49% slower passed as "ok"."""
    baseline = [_recorded_run(p_core) for p_core in (0.24, 0.47, 0.70)]
    candidate = _recorded_run(0.238)
    result = invoke("check", candidate, "--against", baseline[0])
    assert result.exit_code == 3, result.stdout + result.stderr
    row = _row(result.stdout, names.P_CORE)
    assert "baseline too noisy to judge" in row and "over the 25% cap" in row and "ok" not in row
    assert "25.0%" in row  # the threshold shown is the cap, not the spread
    assert result.stderr.strip().startswith("accelbench: baseline too noisy to judge p_whole, p_train, p_core ")


def test_exact_takes_only_the_runs_named_and_says_so(baseline_repeats: list[str]) -> None:
    stray = _recorded_run(60.0)  # a repeat of the same config that pooling takes in
    candidate = _recorded_run(90.0)
    pooled = invoke("check", candidate, "--against", baseline_repeats[0])
    assert pooled.exit_code == 3, pooled.stdout + pooled.stderr  # 60..101: a 41% spread, over the cap
    assert stray in pooled.stdout.splitlines()[0] and "4 run(s) pooled" in pooled.stdout
    exact = invoke("check", candidate, "--against", baseline_repeats[0], "--exact")
    assert exact.exit_code == 1, exact.stdout + exact.stderr  # 90 against exactly 100
    assert "exactly the 1 run(s) named" in exact.stdout and stray not in exact.stdout
    several = invoke("check", candidate, "--against", ",".join(baseline_repeats[:2]))
    assert several.exit_code == 1, several.stdout + several.stderr  # against the median of 100 and 101
    assert "exactly the 2 run(s) named" in several.stdout and baseline_repeats[2] not in several.stdout
    assert "-10.4% worse" in _row(several.stdout, names.P_CORE)


def test_map_and_map_segm_are_judged_with_the_direction_in_words(tracking_uri: str) -> None:
    def run(p_core: float, map_bbox: float, map_segm: float) -> str:
        return record_run(vendor="cpu", topology="1x1", case="mask_rcnn", precision="fp32", config_hash="c0ffee",
                          metrics={names.P_CORE: p_core, names.MAP: map_bbox, names.MAP_SEGM: map_segm})

    baseline = run(10.0, 0.380, 0.340)
    candidate = run(12.0, 0.300, 0.339)
    result = invoke("check", candidate, "--against", baseline)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "+20.0% better" in _row(result.stdout, names.P_CORE) and "improved" in _row(result.stdout, names.P_CORE)
    assert "-21.1% worse" in _row(result.stdout, names.MAP) and "REGRESSION" in _row(result.stdout, names.MAP)
    assert "-0.3% worse" in _row(result.stdout, names.MAP_SEGM)
    assert "ok (within noise)" in _row(result.stdout, names.MAP_SEGM)
    assert result.stderr.strip() == "accelbench: run failed: 1 regression(s): map 21.1% worse"
