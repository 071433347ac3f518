"""The published throughput formulas, driven by a controllable clock."""

from __future__ import annotations

import time

import pytest

from suite import names
from suite.engine.timing import PhaseClock, PhaseTimes, phase_metrics, process_start_time, throughputs


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.syncs = 0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sync(self) -> None:
        self.syncs += 1


def test_formulas_with_a_controlled_clock() -> None:
    fake = FakeClock()
    clock = PhaseClock(fake.sync, clock=fake)
    clock.start()
    for _ in range(4):               # 4 steps of 8 images: 0.5 s loading, 1.5 s compute each
        fake.advance(0.5)
        with clock.window() as window:
            fake.advance(1.5)
        clock.add_step(8, window.seconds)
    with clock.window() as window:   # an epoch-end evaluation of 2 s
        fake.advance(2.0)
    clock.add_eval(window.seconds)
    clock.stop()

    metrics = clock.metrics()
    assert metrics[names.IMAGES] == 32
    assert metrics[names.TRAIN_TIME] == pytest.approx(10.0)
    assert metrics[names.EVAL_TIME] == pytest.approx(2.0)
    assert metrics[names.CORE_TIME] == pytest.approx(6.0)
    assert metrics[names.P_WHOLE] == pytest.approx(32 / 10.0)
    assert metrics[names.P_TRAIN] == pytest.approx(32 / 8.0)
    assert metrics[names.P_CORE] == pytest.approx(32 / 6.0)
    assert metrics[names.P_WHOLE] <= metrics[names.P_TRAIN] <= metrics[names.P_CORE]
    # a synchronize at both edges of every window, plus start and stop
    assert fake.syncs == 2 * 5 + 2


class QueueingClock(FakeClock):
    """A device that runs behind the host: the closing synchronize waits for the queued work."""

    def __init__(self, queued: float) -> None:
        super().__init__()
        self.queued = queued

    def sync(self) -> None:
        super().sync()
        self.advance(self.queued)
        self.queued = 0.0


def test_unsynced_core_time_stops_when_the_step_returns() -> None:
    fake = QueueingClock(queued=0.0)
    clock = PhaseClock(fake.sync, clock=fake)
    clock.start()
    for _ in range(3):  # 0.4 s of host launches per step, after which 0.6 s of device work is still queued
        with clock.window() as window:
            fake.advance(0.4)
            window.mark_host()
            fake.queued = 0.6
        clock.add_step(16, window.seconds, window.host_seconds)
    assert window.host_seconds == pytest.approx(0.4) and window.seconds == pytest.approx(1.0)
    assert clock.core_s == pytest.approx(3.0) and clock.core_unsynced_s == pytest.approx(1.2)
    # the legacy figure overstates p_core by the queued share: 48 / 1.2 vs 48 / 3.0
    assert 48 / clock.core_unsynced_s == pytest.approx(2.5 * 48 / clock.core_s)
    clock.add_step(16, 1.0)  # a window never marked counts in full
    assert clock.core_unsynced_s == pytest.approx(2.2)


def test_steps_before_measuring_are_not_counted() -> None:
    fake = FakeClock()
    clock = PhaseClock(fake.sync, clock=fake)
    with clock.window():
        fake.advance(5.0)            # a warm-up step: the caller does not add it
    assert not clock.started
    clock.add_eval(3.0)              # evaluations before the measured region do not count either
    clock.start()
    with clock.window() as window:
        fake.advance(1.0)
    clock.add_step(4, window.seconds)
    clock.stop()
    assert clock.metrics()[names.P_CORE] == pytest.approx(4.0)
    assert clock.metrics()[names.EVAL_TIME] == 0.0


def test_no_time_means_no_figure_not_zero_or_infinity() -> None:
    assert throughputs(0, 1.0, 1.0, 1.0) == {}
    assert names.P_CORE not in throughputs(10, 1.0, 1.0, 0.0)


def test_reduction_across_ranks_keeps_the_order() -> None:
    """Rank 0 evaluates longest (it merges the shards), rank 1 computes longest: maxima of each rank's own loop
    time keep p_train <= p_core, where max(whole) - max(eval) would not."""
    rank0 = PhaseTimes(images=8.0, whole_s=10.0, loop_s=10.0 - 4.0, core_s=5.0, eval_s=4.0, core_unsynced_s=3.0)
    rank1 = PhaseTimes(images=8.0, whole_s=10.0, loop_s=10.0 - 1.0, core_s=5.9, eval_s=1.0, core_unsynced_s=4.0)
    job = PhaseTimes.combined([rank0, rank1])
    metrics = job.metrics()
    assert job.images == 16 and metrics[names.P_WHOLE] <= metrics[names.P_TRAIN] <= metrics[names.P_CORE]
    assert metrics[names.TRAIN_LOOP_TIME] == 9.0 and metrics[names.EVAL_TIME] == 4.0
    assert metrics[names.P_CORE_UNSYNCED] == 16 / 4.0 and phase_metrics(16, 10, 9, 5.9, 4) == {
        k: v for k, v in metrics.items() if k not in (names.P_CORE_UNSYNCED, names.CORE_UNSYNCED_TIME)}


def test_process_start_is_in_the_past() -> None:
    start = process_start_time()
    assert 0 < time.time() - start < 24 * 3600
