"""Keeping credentials out of what the suite writes: URIs, exception texts and log lines lose their passwords.

A tracking URI may carry `user:password@` (MLflow accepts it), and MLflow's exceptions quote the full request URL.
Anything the suite writes from such a source (tags, the spool journal, log files and the console) goes through
`redact_text`; log handlers use `RedactingFormatter`, so even a library's own log line is covered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

# scheme://user:password@ -> scheme://user:***@ (a password may hold anything but '@', '/' and white space)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:'\"]*):(?P<password>[^/@\s]+)@")
MASK = "***"


def redact_text(text: str) -> str:
    """`text` with the password of every `scheme://user:password@host` in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def redact_uri(uri: str) -> str:
    """A tracking URI fit for a log file: `https://user:secret@host` loses its password."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedactingFormatter(logging.Formatter):
    """A log formatter whose output (message, arguments and traceback) never holds a URI's password."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class RedactingStream:
    """A text stream that masks passwords in everything written through it, then passes it on.

    The console script wraps sys.stdout and sys.stderr in it, so a line printed by a library straight to the
    stream (MLflow's "View run ... at: http://user:password@host/..." is one) loses its password too. Each write
    is masked on its own: the libraries that print a URI write it in one call.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)  # what the caller handed over, as TextIO.write promises

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, buffer...: the wrapped stream's
        return getattr(self._stream, name)


def redact_console() -> None:
    """Mask passwords in everything this process prints on stdout and stderr, whoever prints it."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
