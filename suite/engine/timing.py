"""Clocks and the published throughput definitions (shared/reference.md section 1).

    p_whole = images / measured wall time, per-epoch evaluation included (the suite's own tracking calls are not)
    p_train = images / (measured wall time - evaluation time)      (data loading and copies included)
    p_core  = images / sum of compute windows (forward+loss+backward+optimizer step), each bounded by a
              device synchronize so queued device work is billed to the window that issued it
    p_core_unsynced = images / sum of the same windows on the host clock up to optimizer.step() returning, without
              the closing synchronize: the published pages' definition, recorded beside ours for comparisons

Because every compute window lies inside the training loop, which lies inside the measured wall time, and all three
share one image count, p_whole <= p_train <= p_core holds by construction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import suite
from suite import names


def process_start_time() -> float:
    """Wall time at which this process started running the suite (first import of the `suite` package)."""
    return suite.STARTED_AT


def throughputs(images: int, whole_s: float, loop_s: float, core_s: float) -> dict[str, float]:
    """The three published throughputs in images/second; a phase with no measured time yields no figure.

    `loop_s` is the training loop's time (the measured wall time less evaluation).
    """
    result: dict[str, float] = {}
    for name, seconds in ((names.P_WHOLE, whole_s), (names.P_TRAIN, loop_s), (names.P_CORE, core_s)):
        if images > 0 and seconds > 0:
            result[name] = images / seconds
    return result


@dataclass
class Window:
    seconds: float = 0.0
    host_seconds: float | None = None  # up to `mark_host()`: the host clock without the closing synchronize
    _begin: float = 0.0
    _clock: Callable[[], float] = time.perf_counter

    def mark_host(self) -> None:
        """Note the host time now (after `optimizer.step()` returned, before the closing synchronize)."""
        self.host_seconds = self._clock() - self._begin


class PhaseClock:
    """Accumulates the measured region of a run: its wall time, the evaluation inside it, and compute windows."""

    def __init__(self, synchronize: Callable[[], None], clock: Callable[[], float] = time.perf_counter,
                 barrier: Callable[[], None] = lambda: None,
                 on_edge: Callable[[str], None] | None = None) -> None:
        self._sync = synchronize
        self._clock = clock
        # Called with "start"/"stop" right at the measured region's edges (telemetry reads its energy counter).
        self._on_edge = on_edge
        # The measured region starts and ends at a barrier, so every rank measures the same interval.
        self._barrier = barrier
        self._start: float | None = None
        self._stop: float | None = None
        self.images = 0
        self.core_s = 0.0
        # The published harness's p_core: host time from window start to optimizer.step() returning, no closing
        # synchronize, so device work still queued is billed to the next data-loading gap (reference.md 7).
        self.core_unsynced_s = 0.0
        self.eval_s = 0.0
        # The suite's own recording inside the measured region (a tracking server that stalls) is not the
        # workload's time: it is left out of the region and recorded as tracking_time instead.
        self.excluded_s = 0.0

    @property
    def started(self) -> bool:
        return self._start is not None

    def start(self) -> None:
        self._sync()
        self._barrier()
        self._start = self._clock()
        if self._on_edge is not None:
            self._on_edge("start")

    def stop(self) -> None:
        if self._start is not None and self._stop is None:
            self._sync()
            self._barrier()
            self._stop = self._clock()
            if self._on_edge is not None:
                self._on_edge("stop")

    @contextmanager
    def window(self) -> Iterator[Window]:
        """A synchronised timing window; the caller decides whether it counts (warm-up steps do not)."""
        self._sync()
        window = Window(_begin=self._clock(), _clock=self._clock)
        yield window
        self._sync()
        window.seconds = self._clock() - window._begin

    def add_step(self, images: int, core_seconds: float, host_seconds: float | None = None) -> None:
        self.images += images
        self.core_s += core_seconds
        self.core_unsynced_s += host_seconds if host_seconds is not None else core_seconds

    @contextmanager
    def excluded(self) -> Iterator[None]:
        """Host work that is not the workload's (tracking calls): its time is left out of the measured region."""
        begin = self._clock()
        try:
            yield
        finally:
            if self.started and self._stop is None:
                self.excluded_s += self._clock() - begin

    def add_eval(self, seconds: float) -> None:
        if self.started:
            self.eval_s += seconds

    @property
    def whole_s(self) -> float:
        if self._start is None:
            return 0.0
        end = self._stop if self._stop is not None else self._clock()
        return end - self._start - self.excluded_s

    def times(self) -> PhaseTimes:
        """This rank's measured region (reduce across ranks with `PhaseTimes.combined`)."""
        return PhaseTimes(images=float(self.images), whole_s=self.whole_s, loop_s=self.whole_s - self.eval_s,
                          core_s=self.core_s, eval_s=self.eval_s, core_unsynced_s=self.core_unsynced_s)

    def metrics(self) -> dict[str, float]:
        return self.times().metrics()


@dataclass(frozen=True)
class PhaseTimes:
    """The measured region of one rank, or of the job: images and the seconds of each phase.

    Across ranks images add up and each time is the maximum: since every rank's core <= loop <= whole, the maxima
    keep p_whole <= p_train <= p_core (max(whole) - max(eval) would not).
    """

    images: float
    whole_s: float
    loop_s: float   # the training loop: the measured wall time less evaluation
    core_s: float
    eval_s: float
    core_unsynced_s: float = 0.0

    @staticmethod
    def combined(ranks: list[PhaseTimes]) -> PhaseTimes:
        return PhaseTimes(images=sum(r.images for r in ranks), whole_s=max(r.whole_s for r in ranks),
                          loop_s=max(r.loop_s for r in ranks), core_s=max(r.core_s for r in ranks),
                          eval_s=max(r.eval_s for r in ranks),
                          core_unsynced_s=max(r.core_unsynced_s for r in ranks))

    def metrics(self) -> dict[str, float]:
        """Phase times and the published throughputs, and p_core on the published pages' host clock."""
        result = phase_metrics(self.images, self.whole_s, self.loop_s, self.core_s, self.eval_s)
        if self.core_unsynced_s > 0 and self.images > 0:
            result[names.CORE_UNSYNCED_TIME] = self.core_unsynced_s
            result[names.P_CORE_UNSYNCED] = self.images / self.core_unsynced_s
        return result


def phase_metrics(images: float, whole_s: float, loop_s: float, core_s: float, eval_s: float) -> dict[str, float]:
    """Phase times and throughputs from the job's images (summed over ranks) and times (maxed over ranks)."""
    result = {
        names.IMAGES: float(images),
        names.TRAIN_TIME: whole_s,
        names.TRAIN_LOOP_TIME: loop_s,
        names.CORE_TIME: core_s,
        names.EVAL_TIME: eval_s,
    }
    result.update(throughputs(int(images), whole_s, loop_s, core_s))
    return result
