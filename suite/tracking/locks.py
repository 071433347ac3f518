"""Advisory file locks, so two accelbench processes on one host do not do the same write twice.

`accelbench sync` locks a journal while it uploads it, and `import-published` locks the experiment it fills; a
second process waits for the first and then finds the work done. (fcntl locks are per host: processes on two
machines sharing one tracking server are not serialised by this.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from suite.cache import cache_dir
from suite.errors import DataError


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing), waiting for whoever holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError as error:
        raise DataError(f"{path}: cannot create the lock file: {error.strerror}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def named_lock(kind: str, *identity: str) -> contextlib.AbstractContextManager[None]:
    """A lock for one piece of shared state (say, an experiment of a tracking store), under the cache folder."""
    digest = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]
    return file_lock(cache_dir("locks") / f"{kind}-{digest}.lock")
