"""One rank of a multi-process job: what torchrun starts on every device (`python -m suite worker SPEC`)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

from torch.distributed.elastic.multiprocessing.errors import record

from suite.config import resolve
from suite.engine.distributed import DistContext
from suite.errors import RunError
from suite.launch.launcher import WorkerSpec


class TerminatedError(RunError):
    """torchrun stopped this rank (another rank failed, or the job was interrupted)."""


_terminating = False


def _terminate(signum: int, frame: FrameType | None) -> None:
    global _terminating
    from suite.launch.signals import Interrupted

    if _terminating:
        return  # a repeat while this rank records its end (see suite.launch.signals)
    _terminating = True
    stop = Interrupted(signum)
    if stop.scheduler_reason is not None:
        raise stop  # the scheduler stopping the job: a stop (KILLED), as in a process of its own
    raise TerminatedError(f"stopped by {signal.Signals(signum).name}")


@record  # torchrun's failure summary then carries this rank's exception message
def run_worker(spec_file: Path) -> None:
    # Turn torchrun's SIGTERM into an exception so rank 0 still ends the MLflow run with what it measured.
    signal.signal(signal.SIGTERM, _terminate)
    spec = WorkerSpec.read(spec_file)
    resolved = resolve(spec.case, spec.vendor, spec.topology, spec.overrides, [Path(f) for f in spec.config_files])
    from suite.launch import runner
    from suite.launch.checks import prepare

    prepared = prepare(resolved, data_root=Path(spec.data_root) if spec.data_root else None,
                       synthetic=spec.synthetic)
    outcome = runner.execute(prepared, started_at=spec.started_at, context=DistContext.from_env(),
                             run_dir=Path(spec.run_dir), extra_tags=spec.extra_tags)
    if outcome.unrecorded:  # rank 0 only: the job's exit code says so, as a run in one process does
        from suite.errors import RecordLostError

        raise RecordLostError(outcome.unrecorded)
