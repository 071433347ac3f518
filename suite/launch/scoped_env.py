"""Environment variables set for one run only: applied on entry, and the previous values restored on exit.

A run's variables (`accelerator.env` and what its precision implies) are read by a device stack when it initialises,
so they go in before the first device call, and out again when the run ends, so that the next run in the same
process (the smoke demo, a test) starts from the user's own environment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def scoped_env(variables: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
