"""Where the suite caches what it can regenerate (synthetic datasets, counted FLOPs): $ACCELBENCH_CACHE, else
~/.cache/accelbench."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    base = os.environ.get("ACCELBENCH_CACHE") or Path.home() / ".cache" / "accelbench"
    return Path(base) / kind
