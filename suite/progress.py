"""Progress of long phases (dataset indexing, epochs, evaluations, a matrix) and the console log handler.

On an interactive terminal, rank 0 draws a live bar with position, rate and ETA (click's progress bar); anywhere
else (CI, a file, a pipe, torchrun workers) the same progress becomes plain log lines: one whenever the phase asks
for it (every `tracking.log_every` steps of an epoch), one every `ACCELBENCH_PROGRESS_INTERVAL` seconds (default 10),
and a summary when it ends (at DEBUG for a phase over within a second). Ranks other
than 0 write their lines at DEBUG only, so a job's console shows one progress stream. `--quiet` silences both.

`ACCELBENCH_PROGRESS` overrides the choice: `auto` (default), `bar`, `lines` or `off`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any, ClassVar, TextIO

import click

MODE_ENV = "ACCELBENCH_PROGRESS"
INTERVAL_ENV = "ACCELBENCH_PROGRESS_INTERVAL"
MODES = ("auto", "bar", "lines", "off")
DEFAULT_INTERVAL_S = 10.0
QUICK_PHASE_S = 1.0
# Records that only repeat what a live bar already shows carry this attribute; the console drops them while a bar
# is drawn (the per-rank log files keep them).
PROGRESS_RECORD = "progress_line"

logger = logging.getLogger("suite.progress")


def is_main_rank() -> bool:
    """torchrun sets RANK in each worker; a single-process run has none and is rank 0."""
    return os.environ.get("RANK", "0") == "0"


def _mode() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    return mode if mode in MODES else "auto"


def _interval_s() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _wants_bar(stream: TextIO) -> bool:
    mode = _mode()
    if mode in ("off", "lines") or not is_main_rank() or not logger.isEnabledFor(logging.INFO):
        return False
    return mode == "bar" or stream.isatty()


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:d}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """One phase's progress: `update(n)` as work completes; use as a context manager (or call `close()`).

    `total` may be None when the amount of work is unknown (no percentage or ETA then). `lines=True` forces plain
    lines even on a terminal: for a phase whose own sub-processes draw bars (a matrix).
    """

    active: ClassVar[Progress | None] = None  # the bar being drawn now, for ConsoleHandler

    def __init__(self, label: str, total: int | None, unit: str = "it", *, lines: bool = False,
                 stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.note = ""
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self._last_line_at: float | None = None
        self._first: tuple[float, int] | None = None  # (time, units done) at the first update
        self._interval = _interval_s()
        self._level = logging.INFO if is_main_rank() else logging.DEBUG
        self._silent = _mode() == "off"
        self._bar: Any = None
        self._lines = 0
        if not lines and not self._silent and _wants_bar(self.stream):
            self._bar = click.progressbar(length=total, label=label, file=self.stream, show_eta=True,
                                          show_percent=total is not None, show_pos=True,
                                          item_show_func=lambda text: text)
            self._bar.__enter__()
            Progress.active = self

    @property
    def drawing(self) -> bool:
        return self._bar is not None

    def rate(self) -> float | None:
        """Units per second since the first update: the first unit carries start-up costs (workers forking,
        kernels compiling) that say nothing about the pace of the rest."""
        if self._first is None or self.done <= self._first[1]:
            return None
        elapsed = time.perf_counter() - self._first[0]
        return (self.done - self._first[1]) / elapsed if elapsed > 0 else None

    def eta_s(self) -> float | None:
        rate = self.rate()
        if self.total is None or not rate:
            return None
        return max(0, self.total - self.done) / rate

    def update(self, n: int = 1, note: str = "", *, line: bool = False) -> None:
        """`n` more units done; `note` is shown after the rate (e.g. the loss); `line` forces a plain line now."""
        now = time.perf_counter()
        self.done += n
        if self._first is None:
            self._first = (now, self.done)
            self._last_line_at = now
        if note:
            self.note = note
        if self._silent:
            return
        if self._bar is not None:
            self._bar.update(n, ", ".join(p for p in (self._rate_text(), self.note) if p))
        if line or now - self._last_line_at >= self._interval:
            self._line(self._status())
            self._last_line_at = now
            self._lines += 1

    def _rate_text(self) -> str:
        rate = self.rate()
        if rate is None:
            return ""
        return f"{rate:,.0f} {self.unit}/s" if rate >= 100 else f"{rate:.2g} {self.unit}/s" if rate < 1 \
            else f"{rate:.1f} {self.unit}/s"

    def _status(self) -> str:
        position = f"{self.done}/{self.total} {self.unit}" if self.total is not None else f"{self.done} {self.unit}"
        if self.total:
            position += f" ({100 * self.done / self.total:.0f}%)"
        parts = [position, self._rate_text()]
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        if self.note:
            parts.append(self.note)
        return f"{self.label}: " + ", ".join(p for p in parts if p)

    def _line(self, text: str) -> None:
        # With a bar on screen the line goes to the log files only (ConsoleHandler drops it).
        logger.log(self._level, "%s", text, extra={PROGRESS_RECORD: True})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
            Progress.active = None
        if not self._silent and self.done:
            elapsed = time.perf_counter() - self.started
            rate = self._rate_text()
            summary = f"{self.label}: {self.done} {self.unit} in {format_duration(elapsed)}" \
                + (f" ({rate})" if rate else "") + (f", {self.note}" if self.note else "")
            # A phase over in a blink (a small annotation file) is not worth a console line.
            quick = elapsed < QUICK_PHASE_S and not self._lines
            logger.log(logging.DEBUG if quick else self._level, "%s", summary)

    @classmethod
    def abandon(cls) -> None:
        """Finish the bar on screen, if any (a phase that failed mid-way never closes its own)."""
        if cls.active is not None:
            cls.active.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class ConsoleHandler(logging.StreamHandler):
    """stderr logging that shares the terminal with a live bar: clears the bar's line before a log line and drops
    records that only repeat what the bar shows. The bar redraws itself on its next update.

    Without a `stream` it writes to whatever `sys.stderr` is when a record arrives (as logging's last-resort
    handler does), so a caller that redirects stderr after the handler was made, such as click's CliRunner,
    still gets the lines.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._given = stream

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr if self._given is None else self._given

    @stream.setter
    def stream(self, value: TextIO | None) -> None:  # StreamHandler.__init__ and setStream assign it
        self._given = value

    def emit(self, record: logging.LogRecord) -> None:
        bar = Progress.active
        if bar is not None and bar.stream is self.stream:
            if getattr(record, PROGRESS_RECORD, False):
                return
            self.stream.write("\r\x1b[K")
        super().emit(record)
