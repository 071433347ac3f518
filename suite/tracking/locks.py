"""Advisory file locks, so two accelbench processes on one host do not do the same write twice.

`accelbench sync` locks a journal while it uploads it, `import-published` locks the experiment it fills, and the
annotation index is built under a lock; a second process waits for the first and then finds the work done. (fcntl
locks are per host: processes on two machines sharing one tracking server are not serialised by this.)

A lock file is opened without following a symbolic link and must be a regular file, so a planted link cannot make
the suite create or truncate a file elsewhere and a planted FIFO cannot hang it. The holder writes its pid and start
time into the file; a waiter says who it waits for, and gives up after `ACCELBENCH_LOCK_TIMEOUT_S` (a holder that
is stopped, say with Ctrl-Z, would otherwise make it wait silently forever).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from suite import processes
from suite.cache import cache_dir
from suite.errors import DataError

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_ENV = "ACCELBENCH_LOCK_TIMEOUT_S"
DEFAULT_LOCK_TIMEOUT_S = 600.0  # an upload of a long run's journal takes seconds to a few minutes
POLL_S = 0.2
NOTICE_AFTER_S = 1.0  # a wait shorter than this (another process creating a store's schema) goes unsaid


class LockTimeoutError(DataError):
    """Another process held the lock for longer than this one may wait."""


def lock_timeout_s() -> float:
    text = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_LOCK_TIMEOUT_S
    except ValueError:
        raise DataError(f"{LOCK_TIMEOUT_ENV}={text!r}: not a number of seconds") from None
    if not value >= 0:
        raise DataError(f"{LOCK_TIMEOUT_ENV}={text!r}: must be 0 or more seconds")
    return value


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a symlink planted as the lock is refused (ELOOP), never followed to create its target.
        # O_NONBLOCK: opening a planted FIFO returns at once (and is then refused below).
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as error:
        reason = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
        raise DataError(f"{path}: cannot use as a lock file: {reason}") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise DataError(f"{path}: cannot use as a lock file: not a regular file")
    return descriptor


def _holder(descriptor: int) -> str:
    """Who holds the lock, as its holder wrote it: "pid 123, stopped since 2026-12-04T10:00:00+00:00" (", stopped"
    only when it is), or "an unknown process"."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(descriptor, 200, 0).decode("utf-8", "replace").strip()
        fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
        if "pid" in fields:
            pid = int(fields["pid"])
            state = ", stopped" if processes.stopped(pid) else ""
            return f"pid {pid}{state} since {fields.get('since', '?')}"
    return "an unknown process"


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a regular file, created if missing), waiting at most `timeout_s`
    (default: ACCELBENCH_LOCK_TIMEOUT_S, else 600 s) for whoever holds it."""
    limit = lock_timeout_s() if timeout_s is None else timeout_s
    descriptor = _open(path)
    try:
        began = time.monotonic()
        said = False
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - began
                if waited >= limit:
                    holder = _holder(descriptor)
                    raise LockTimeoutError(f"{path}: gave up after {waited:.0f} s waiting for the lock held by "
                                           f"{holder}; {LOCK_TIMEOUT_ENV} sets how long to wait") from None
                if not said and waited >= NOTICE_AFTER_S:
                    said = True
                    logger.warning("waiting for %s, held by %s (giving up after %.0f s)", path,
                                   _holder(descriptor), limit)
                time.sleep(POLL_S)
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"pid={os.getpid()} since={since}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def named_lock(kind: str, *identity: str) -> contextlib.AbstractContextManager[None]:
    """A lock for one piece of shared state (say, an experiment of a tracking store), under the cache folder."""
    digest = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]
    return file_lock(cache_dir("locks") / f"{kind}-{digest}.lock")
