"""Calls a stop signal must not cut in half: a write to the tracking store.

A stop signal becomes an exception in the main thread wherever it lands (suite.launch.signals). Landing inside a
write to a SQLite store, it leaves that connection holding the database's lock, and the run's own record of the stop
then fails with "database is locked" until the scheduler kills the process. Inside `shielded()` the signal is
held and raised as the outermost shielded call returns, a moment later. Only the main thread is shielded: that is
where Python runs signal handlers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_depth = 0
_held: BaseException | None = None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold stop signals arriving in the main thread until the block ends, then raise the first."""
    global _depth, _held
    if not _in_main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _held is not None:
            error, _held = _held, None
            raise error


def hold(error: BaseException) -> bool:
    """Keep `error` for the end of the current shielded block; False when none is running (raise it now)."""
    global _held
    if _depth == 0 or not _in_main_thread():
        return False
    if _held is None:
        _held = error
    return True
