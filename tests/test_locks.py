"""The lock files that serialise sync, import-published and the annotation index build, against what can be
planted in their place (a dangling symlink, a FIFO) and against a holder that never lets go (a stopped process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.tracking.locks import LockTimeoutError, file_lock
from suite.tracking.spool import SYNC_LOCK_FILE
from tests.helpers import run_cli


def test_a_symlink_planted_as_the_lock_is_refused_and_its_target_never_created(tmp_path: Path) -> None:
    lock, target = tmp_path / "x.lock", tmp_path / "elsewhere" / "created-by-the-lock"
    target.parent.mkdir()
    lock.symlink_to(target)
    with pytest.raises(Exception, match=r"x\.lock: cannot use as a lock file: it is a symbolic link$"), \
            file_lock(lock):
        pass
    assert not target.exists()


def test_a_fifo_planted_as_the_lock_is_refused_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    os.mkfifo(lock)
    began = time.monotonic()
    with pytest.raises(Exception, match="not a regular file$"), file_lock(lock):
        pass
    assert time.monotonic() - began < 5


def _stopped_holder(lock: Path) -> subprocess.Popen[bytes]:
    """A process that takes the lock and is then stopped (SIGSTOP), as Ctrl-Z stops a sync."""
    code = ("import sys, time; from pathlib import Path; from suite.tracking.locks import file_lock\n"
            "with file_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    os.kill(holder.pid, signal.SIGSTOP)
    return holder


def test_a_waiter_names_the_holder_and_gives_up_after_the_timeout(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    lock = tmp_path / "x.lock"
    holder = _stopped_holder(lock)
    try:
        began = time.monotonic()
        with pytest.raises(LockTimeoutError) as raised, file_lock(lock, timeout_s=2.5):
            pass
        waited = time.monotonic() - began
    finally:
        holder.kill()
        holder.wait()
    assert 2.5 <= waited < 12
    message = str(raised.value)
    assert f"held by pid {holder.pid}, stopped since 20" in message and "ACCELBENCH_LOCK_TIMEOUT_S" in message
    assert f"held by pid {holder.pid}, stopped since" in caplog.text  # said while waiting, not only at the end
    with file_lock(lock, timeout_s=0):  # the holder is gone: the lock is free at once
        pass


def test_sync_behind_a_stopped_holder_ends_with_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "spooled"
    folder.mkdir()
    holder = _stopped_holder(folder / SYNC_LOCK_FILE)
    try:
        done = run_cli("sync", str(folder), env={"ACCELBENCH_LOCK_TIMEOUT_S": "2.5"}, timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("accelbench: error: ") and f"held by pid {holder.pid}, stopped" in last
    assert "waiting for" in done.stderr
