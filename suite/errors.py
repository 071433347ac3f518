"""The suite's exception tree. Each is a click exception carrying its exit code, so the CLI (and click's own
CliRunner in tests) turns it into one line on stderr and that code, in one place: `show()`.

    BenchError                 exit 2: bad input, found before any run is created
    ├── ConfigError            a config file, --set flag or key is wrong (names file/flag and key)
    ├── UnknownNameError       unknown case / vendor / topology / adapter (lists the valid names)
    ├── DataError              data root or COCO annotation file missing or malformed
    ├── WeightsError           weight file missing or its hash does not match its name
    ├── PluginError            a case, adapter or vendor-config plugin (entry point) fails to load
    └── VendorUnavailableError the vendor's device or software stack is not present on this machine
    RunError                   exit 1: a failure while a run was in progress (the run is marked FAILED)
    └── NonFiniteLossError     the loss became NaN/inf at a given step
    RecordLostError            exit 4: a run ended, but part of its record reached neither MLflow nor the journal
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import IO, Any

import click


class _OneLineError(click.ClickException):
    """Shown as one `accelbench: <prefix><message>` line, a URI's password masked (suite.redaction)."""

    prefix = ""

    def __str__(self) -> str:
        # One line whatever the user typed: a key or value with a line break in it is shown escaped.
        return self.message.replace("\r", "\\r").replace("\n", "\\n")

    def format_message(self) -> str:
        return str(self)

    def show(self, file: IO[Any] | None = None) -> None:
        from suite.redaction import redact_text

        click.echo(f"accelbench: {self.prefix}{redact_text(str(self))}", err=True, file=file)


class BenchError(_OneLineError):
    """Bad input detected before a run started."""

    exit_code = 2
    prefix = "error: "


class ConfigError(BenchError):
    def __init__(self, message: str, *, source: str | None = None, key: str | None = None) -> None:
        self.source = source
        self.key = key
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownNameError(BenchError):
    def __init__(self, kind: str, name: str, valid: Iterable[str], *, where: str | None = None,
                 note: str | None = None) -> None:
        valid = sorted(valid)
        self.kind, self.name, self.valid = kind, name, valid
        message = f"unknown {kind} {name!r}{did_you_mean(name, valid)}; valid: {', '.join(valid) or '(none)'}"
        if note:
            message = f"{message}; {note}"
        super().__init__(f"{where}: {message}" if where else message)


class DataError(BenchError):
    pass


class WeightsError(BenchError):
    pass


class VendorUnavailableError(BenchError):
    pass


class PluginError(BenchError):
    pass


class RunError(_OneLineError):
    """A failure during a run; the run is recorded as FAILED with this message as `bench.failure`."""

    exit_code = 1
    prefix = "run failed: "


class RecordLostError(_OneLineError):
    """A run finished, but part of its record reached neither the tracking server nor the spool journal."""

    exit_code = 4
    prefix = "run not recorded: "


class NonFiniteLossError(RunError):
    def __init__(self, step: int, value: float) -> None:
        self.step, self.value = step, value
        super().__init__(f"loss became {value} at step {step}")


def describe(error: BaseException) -> str:
    """`Type: message` (just `Type` without a message), with any URI's password masked (suite.redaction)."""
    from suite.redaction import redact_text

    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return redact_text(text)


def failure_line(error: BaseException, limit: int = 500) -> str:
    """A run's failure as one line that says what failed: for an error a DataLoader worker raised, PyTorch's
    re-raised copy starts "Caught X in DataLoader worker process 0" and holds the worker's traceback, whose last
    line is the error itself (naming, say, the image file); that line is taken."""
    text = describe(error)
    if "Original Traceback" in text:
        if isinstance(error, _OneLineError):  # it shows its line breaks escaped
            text = text.replace("\\n", "\n")
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        return _QUALIFIED.sub(r"\1", last)[:limit]
    return (text.splitlines() or [""])[0][:limit]


# "cases.detection.data.ImageError: ..." (a traceback's last line qualifies the type): the type's own name is kept
_QUALIFIED = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*: )")


def one_line(error: BaseException, limit: int = 300) -> str:
    """`describe(error)` cut to its first line and `limit` characters, for a warning or a tag about a failure."""
    return (describe(error).splitlines() or [""])[0][:limit]


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """Return a ` (did you mean 'x'?)` suffix for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
