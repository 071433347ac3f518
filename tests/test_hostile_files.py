"""Files that are not what they claim: a device that never ends, a FIFO nobody writes, a file far too large.

Every file the suite reads because someone pointed it there (a config layer, an annotation file, a spooled run's
journal, an event log) is read only when it is a regular file, up to a size limit; anything else is one line, exit 2,
at once and without eating the host's memory.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from suite import files
from tests.helpers import REPO

SHOW_CONFIG = ["show-config", "--case", "faster_rcnn", "--vendor", "cpu"]


def _limited(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`python -m suite ARGS` with 2 GiB of address space and 60 s: a reader without a bound fails fast here
    instead of taking the test machine's memory."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    return subprocess.run([sys.executable, "-m", "suite", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, preexec_fn=limit)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_config_that_never_ends_is_refused_at_once(device: str) -> None:
    done = _limited(*SHOW_CONFIG, "--config", device)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == f"accelbench: error: {device}: not a regular file (a character device)"


def test_a_fifo_config_is_refused_instead_of_waiting_for_a_writer(fifo: Path) -> None:
    done = _limited(*SHOW_CONFIG, "--config", str(fifo))
    assert done.returncode == 2 and done.stderr.strip() == f"accelbench: error: {fifo}: not a regular file (a FIFO)"


def test_a_config_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:  # sparse: the test writes nothing, a reader without a bound reads 3 GiB
        handle.truncate(3 * 2**30)
    done = _limited(*SHOW_CONFIG, "--config", str(huge))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == f"accelbench: error: {huge}: larger than the 4 MiB this kind of file may have"


def test_journals_event_logs_and_annotation_files_are_read_the_same_way(tmp_path: Path, fifo: Path) -> None:
    spooled = tmp_path / "spooled"
    spooled.mkdir()
    os.mkfifo(spooled / "journal.jsonl")
    synced = _limited("sync", str(spooled))
    assert synced.returncode == 2 and "journal.jsonl: not a regular file (a FIFO)" in synced.stderr, synced.stderr
    checked = _limited("check-log", str(fifo))
    assert checked.returncode == 2 and f"{fifo}: not a regular file (a FIFO)" in checked.stderr, checked.stderr
    with pytest.raises(files.UnreadableFileError, match=r"^not a regular file \(a FIFO\)$"):
        files.read_text(fifo, limit=files.ANNOTATION_FILE_LIMIT)


def test_a_file_is_read_up_to_its_limit_and_refused_one_byte_over(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"a" * 2049)
    assert files.read_text(path, limit=2049) == "a" * 2049
    with pytest.raises(files.UnreadableFileError, match="larger than the 2 KiB"):
        files.read_text(path, limit=2048)
