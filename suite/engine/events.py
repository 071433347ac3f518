"""The run's structured event log: JSON lines in MLPerf mllog's shape (INTERVAL_START/END, POINT_IN_TIME)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

from suite import names

NAMESPACE = "accelbench"


class EventLog:
    """Append-only JSON-lines log; each line is flushed so a crashed run still leaves its events."""

    def __init__(self, path: Path, *, rank: int = 0) -> None:
        self.path = path
        self.rank = rank
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO | None = path.open("a", encoding="utf-8")

    def _write(self, event_type: str, key: str, value: Any = None, **metadata: Any) -> None:
        if self._handle is None:
            return
        record = {"namespace": NAMESPACE, "time_ms": int(time.time() * 1000), "event_type": event_type,
                  "key": key, "value": value, "metadata": {"rank": self.rank, **metadata}}
        self._handle.write(json.dumps(record, default=str) + "\n")
        self._handle.flush()

    def start(self, key: str, value: Any = None, **metadata: Any) -> None:
        self._write(names.EV_INTERVAL_START, key, value, **metadata)

    def end(self, key: str, value: Any = None, **metadata: Any) -> None:
        self._write(names.EV_INTERVAL_END, key, value, **metadata)

    def point(self, key: str, value: Any = None, **metadata: Any) -> None:
        self._write(names.EV_POINT, key, value, **metadata)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
