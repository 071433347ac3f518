"""Keeping credentials out of what the suite writes: URIs, exception texts and log lines lose their passwords.

A tracking URI may carry `user:password@` (MLflow accepts it), and MLflow's exceptions quote the full request URL.
Anything the suite writes from such a source (tags, the spool journal, log files and the console) goes through
`redact_text`; log handlers use `RedactingFormatter`, so even a library's own log line is covered.
"""

from __future__ import annotations

import logging
import re
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
