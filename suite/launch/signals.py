"""Stop signals as exceptions, so a run that is told to stop still ends its MLflow run with what it measured.

Python already turns SIGINT (Ctrl-C) into KeyboardInterrupt; SIGTERM (what `kill`, schedulers and torchrun send)
would end the process on the spot, leaving the run RUNNING forever. `stop_signals_raise()` makes SIGTERM (and SIGHUP)
raise `Interrupted`, a KeyboardInterrupt, so the runner's lifecycle handling records the run as KILLED and the CLI
exits with the shell's code for the signal (128 + its number). Inside a scheduler's job the recorded reason is the
scheduler's ("cancelled by the scheduler", "time limit reached": suite.launch.scheduler.stop_reason).

A scheduler signals every process of a job at once, DataLoader workers included: a worker killed first would make
the training loop fail with "DataLoader worker ... is killed by signal: Terminated", a crash in place of a stop. The
data loaders' workers therefore leave quietly on SIGTERM and ignore the other stop signals (`ignore_stop_signals`,
their worker_init_fn): the main process acts on its own signal and records the stop.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from types import FrameType

from suite import interrupts

# The signals a batch system or a closing terminal sends before it gives up and kills.
HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The process received a stop signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.received_at = time.time()
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @functools.cached_property
    def scheduler_reason(self) -> str | None:
        """Why the scheduler stopped the job, asked once (suite.launch.scheduler.stop_reason); None outside one."""
        from suite.launch.scheduler import stop_reason

        return stop_reason(self.signum, self.received_at)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# A scheduler's warning ahead of a time limit (`#SBATCH --signal=USR1@120`): the run stops at its next step
# boundary and keeps what it measured (suite.engine.trainer), instead of being killed mid-step at the limit.
WARNINGS = (signal.SIGUSR1, signal.SIGUSR2)
_warning: Interrupted | None = None


_stopping: Interrupted | None = None


def _raise(signum: int, frame: FrameType | None) -> None:
    global _stopping
    if _stopping is not None:
        # A repeat while the first stop is being recorded (SLURM can signal a step twice at its time limit): raised
        # again, it would cut that record short and leave the run RUNNING; the scheduler's SIGKILL still ends all.
        return
    stop = _stopping = Interrupted(signum)
    if not interrupts.hold(stop):  # held while a write to the tracking store finishes (suite.interrupts)
        raise stop


def _note_warning(signum: int, frame: FrameType | None) -> None:
    global _warning
    if _warning is None:
        _warning = Interrupted(signum)


def warning() -> Interrupted | None:
    """The warning signal this process received, if any (the stop to raise at the next step boundary)."""
    return _warning


def stop_signals_raise() -> None:
    """From now on SIGTERM and SIGHUP raise `Interrupted` in the main thread; SIGUSR1/2 are noted (`warning`)."""
    for signum in HANDLED:
        signal.signal(signum, _raise)
    for signum in WARNINGS:
        signal.signal(signum, _note_warning)


def exit_code(error: KeyboardInterrupt) -> int:
    """The exit code a shell reports for the signal behind `error` (130 for a plain Ctrl-C)."""
    return error.exit_code if isinstance(error, Interrupted) else 128 + signal.SIGINT


def describe(error: KeyboardInterrupt) -> str:
    """The reason recorded on a KILLED run: the scheduler's, inside its job."""
    if not isinstance(error, Interrupted):
        return "interrupted by SIGINT"
    return error.scheduler_reason or str(error)


def ignore_warning_signals() -> None:
    """In a child about to exec a program of its own (torchrun): a scheduler's warning signal (SIGUSR1/2, whose
    default action ends a process) is for the workers, which act on it; ignored here, and inherited as ignored until
    a process of the suite installs its own handler."""
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)


def _leave_quietly(signum: int, frame: FrameType | None) -> None:
    os._exit(0)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A DataLoader worker's init: stop signals are the main process's to act on (see the module docstring).

    SIGTERM still ends the worker (it is how the loader itself stops a worker that does not finish), but as an exit,
    not as a death by signal: the main process takes that for a failure only if it is still waiting for the worker's
    batches seconds later, by when it has acted on its own SIGTERM. The warning signals and SIGHUP are ignored."""
    signal.signal(signal.SIGTERM, _leave_quietly)
    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
