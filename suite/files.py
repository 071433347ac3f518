"""Reading a file someone pointed the suite at, safely: only a regular file, only up to a size limit.

`--config /dev/zero` would otherwise grow until the kernel's OOM killer ends the process (and on a shared host,
maybe someone else's), and a FIFO would block the open forever. Each reader states its own limit (a config layer
is a few KB, an annotation file hundreds of MB); the error says which limit and what the file is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

CONFIG_FILE_LIMIT = 4 * MIB  # a config layer or a published page is a few KB
JOURNAL_FILE_LIMIT = 512 * MIB  # a spooled run's journal: one line per logged value
EVENT_LOG_LIMIT = 512 * MIB
ANNOTATION_FILE_LIMIT = 4096 * MIB  # COCO's train2017 instances file is 448 MB
CHUNK = MIB  # what a file that grows while it is read adds is read this much at a time


class UnreadableFileError(Exception):
    """What is wrong with the file, worded to follow its name: "not a regular file (a FIFO)"."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB else f"{limit // KIB} KiB"


def _read(path: Path, limit: int) -> bytearray:
    """The content of the regular file at `path`, at most `limit` bytes, or UnreadableFileError.

    The file is opened without blocking (a FIFO's open would wait for a writer), checked on the open descriptor
    (no race with a rename), and read no further than the limit even if it grows meanwhile.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise UnreadableFileError(f"cannot read: {error.strerror}") from None
    too_large = UnreadableFileError(f"larger than the {_size(limit)} this kind of file may have")
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        facts = os.fstat(descriptor)
        if not stat.S_ISREG(facts.st_mode):
            raise UnreadableFileError(f"not a regular file ({_kind(facts.st_mode)})")
        if facts.st_size > limit:
            raise too_large
        os.set_blocking(descriptor, True)
        # One buffer of the file's size (read(n) would allocate n bytes up front, the limit's worth), then what a
        # file growing meanwhile adds, a chunk at a time, up to the limit.
        content = bytearray(facts.st_size)
        try:
            with memoryview(content) as view:
                filled = 0
                while filled < len(content) and (count := handle.readinto(view[filled:])):
                    filled += count
            del content[filled:]
            while chunk := handle.read(min(CHUNK, limit + 1 - len(content))):
                content += chunk
                if len(content) > limit:
                    raise too_large
        except OSError as error:
            raise UnreadableFileError(f"cannot read: {error.strerror}") from None
    return content


def read_text(path: Path, *, limit: int) -> str:
    """The regular file at `path` (at most `limit` bytes) as UTF-8 text, or UnreadableFileError: not a regular
    file, larger than the limit, unreadable, or not UTF-8 (naming the first undecodable byte)."""
    content = _read(path, limit)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableFileError(f"not UTF-8 text (byte {error.start})") from None
