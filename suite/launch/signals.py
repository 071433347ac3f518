"""Stop signals as exceptions, so a run that is told to stop still ends its MLflow run with what it measured.

Python already turns SIGINT (Ctrl-C) into KeyboardInterrupt; SIGTERM (what `kill`, schedulers and torchrun send)
would end the process on the spot, leaving the run RUNNING forever. `stop_signals_raise()` makes SIGTERM (and SIGHUP)
raise `Interrupted`, a KeyboardInterrupt, so the runner's lifecycle handling records the run as KILLED and the CLI
exits with the shell's code for the signal (128 + its number).
"""

from __future__ import annotations

import signal
from types import FrameType

# The signals a batch system or a closing terminal sends before it gives up and kills.
HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The process received a stop signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def stop_signals_raise() -> None:
    """From now on SIGTERM and SIGHUP raise `Interrupted` in the main thread."""
    for signum in HANDLED:
        signal.signal(signum, _raise)


def exit_code(error: KeyboardInterrupt) -> int:
    """The exit code a shell reports for the signal behind `error` (130 for a plain Ctrl-C)."""
    return error.exit_code if isinstance(error, Interrupted) else 128 + signal.SIGINT


def describe(error: KeyboardInterrupt) -> str:
    """The reason recorded on a KILLED run."""
    return str(error) if isinstance(error, Interrupted) else "interrupted by SIGINT"
