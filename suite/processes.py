"""Facts about another process on this host, read without touching it: is it alive, is it stopped.

Lock waiters name a stopped holder, `sync` leaves a journal alone while its process runs, and the annotation index
removes the staging folders of builders that are gone: each asks here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (someone else's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        return True
    return True


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, Ctrl-Z, a debugger): it holds what it holds until continued."""
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state in ("T", "t")
    return False
