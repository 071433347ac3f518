"""MLPerf-style rules for a run's event log (events.jsonl), applied to every run at its end and by `check-log`.

    run_once        exactly one run start (the first event) and one run stop (the last), with a status
    paired          every interval that starts ends, with the same key and epoch, in order, inside the run
    init_first      one init interval, closed before training starts
    time_order      timestamps never go backwards
    eval_per_epoch  convergence and smoke modes: an eval_accuracy after every epoch, before the next one starts
    images          the epochs' image and step counts add up to the training totals (the timed images never
                    exceed the images trained)

A run that failed fails `run_once`/`paired` only if its log was cut short; the verdict then names what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite import files, names
from suite.errors import DataError, one_line

RULES = ("run_once", "paired", "init_first", "time_order", "eval_per_epoch", "images")
EVAL_MODES = ("convergence", "smoke")


@dataclass
class Verdict:
    problems: dict[str, list[str]] = field(default_factory=lambda: {rule: [] for rule in RULES})

    @property
    def passed(self) -> bool:
        return not any(self.problems.values())

    def tag(self, limit: int = 500) -> str:
        if self.passed:
            return "pass"
        text = "fail: " + "; ".join(f"{rule}: {problems[0]}" for rule, problems in self.problems.items() if problems)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def report(self) -> str:
        lines = []
        for rule, problems in self.problems.items():
            lines.append(f"{'ok  ' if not problems else 'FAIL'} {rule}" + "".join(f"\n       {p}" for p in problems))
        lines.append("compliant" if self.passed else "NOT compliant")
        return "\n".join(lines)


COUNT_FIELDS = ("images", "steps", "step", "epoch_num")  # metadata the rules add up or compare


def _epoch(event: dict[str, Any]) -> Any:
    return (event.get("metadata") or {}).get("epoch_num")


def check_events(events: list[dict[str, Any]]) -> Verdict:
    verdict = Verdict()
    problems = verdict.problems
    if not events:
        problems["run_once"].append("the log is empty")
        return verdict

    runs = [e for e in events if e["key"] == names.KEY_RUN]
    starts = [e for e in runs if e["event_type"] == names.EV_INTERVAL_START]
    stops = [e for e in runs if e["event_type"] == names.EV_INTERVAL_END]
    if len(starts) != 1 or events[0] is not starts[0]:
        problems["run_once"].append(f"{len(starts)} run starts; exactly one, as the first event, is required")
    if len(stops) != 1 or events[-1] is not stops[0]:
        problems["run_once"].append(f"{len(stops)} run stops; exactly one, as the last event, is required")
    elif not (stops[0].get("metadata") or {}).get("status"):
        problems["run_once"].append("the run stop carries no status")

    open_intervals: list[tuple[str, Any]] = []
    for index, event in enumerate(events):
        kind, key = event["event_type"], event["key"]
        if kind == names.EV_INTERVAL_START:
            open_intervals.append((key, _epoch(event)))
        elif kind == names.EV_INTERVAL_END:
            if not open_intervals or open_intervals[-1] != (key, _epoch(event)):
                expected = f"{open_intervals[-1][0]}" if open_intervals else "nothing open"
                problems["paired"].append(f"event {index + 1}: {key} ends while {expected} is the open interval")
                if (key, _epoch(event)) in open_intervals:
                    open_intervals = open_intervals[: open_intervals.index((key, _epoch(event)))]
            else:
                open_intervals.pop()
    for key, epoch in open_intervals:
        problems["paired"].append(f"{key}{f' (epoch {epoch})' if epoch is not None else ''} never ends")

    inits = [i for i, e in enumerate(events) if e["key"] == names.KEY_INIT]
    train_starts = [i for i, e in enumerate(events)
                    if e["key"] == names.KEY_TRAIN and e["event_type"] == names.EV_INTERVAL_START]
    if len(inits) != 2:
        problems["init_first"].append(f"{len(inits)} init events; one start and one end are required")
    elif train_starts and inits[1] > train_starts[0]:
        problems["init_first"].append("training starts before init ends")

    times = [e["time_ms"] for e in events]
    backwards = [i + 1 for i in range(1, len(times)) if times[i] < times[i - 1]]
    if backwards:
        problems["time_order"].append(f"time goes backwards at event(s) {backwards[:5]}")

    mode = (starts[0].get("metadata") or {}).get("mode") if starts else None
    epoch_ends = [(i, e) for i, e in enumerate(events)
                  if e["key"] == names.KEY_EPOCH and e["event_type"] == names.EV_INTERVAL_END]
    if mode in EVAL_MODES:
        for index, end in epoch_ends:
            following = events[index + 1:]
            until = next((j for j, e in enumerate(following) if e["key"] == names.KEY_EPOCH
                          and e["event_type"] == names.EV_INTERVAL_START), len(following))
            if not any(e["key"] == names.KEY_EVAL_ACCURACY and _epoch(e) == _epoch(end) for e in following[:until]):
                problems["eval_per_epoch"].append(f"no eval_accuracy after epoch {_epoch(end)}")

    train_ends = [e for e in events if e["key"] == names.KEY_TRAIN and e["event_type"] == names.EV_INTERVAL_END]
    if train_ends:
        totals = train_ends[-1].get("metadata") or {}
        epoch_images = sum((e.get("metadata") or {}).get("images", 0) for _, e in epoch_ends)
        epoch_steps = sum((e.get("metadata") or {}).get("steps", 0) for _, e in epoch_ends)
        if "steps" in totals and epoch_steps != totals["steps"]:
            problems["images"].append(f"epochs add up to {epoch_steps} steps, training reports {totals['steps']}")
        if "images" in totals and totals["images"] > epoch_images:
            problems["images"].append(f"{totals['images']} images timed but only {epoch_images} trained")
        measure = next((e for e in events if e["key"] == names.KEY_MEASURE_START), None)
        if measure is not None and (measure.get("metadata") or {}).get("step") == 0 \
                and "images" in totals and totals["images"] != epoch_images:
            problems["images"].append(f"every step was timed, yet {totals['images']} images timed and "
                                      f"{epoch_images} trained")
    return verdict


def check_log(path: Path) -> Verdict:
    """The verdict on one event log file; an unreadable line is itself a failure."""
    events = []
    verdict = Verdict()
    try:
        text = files.read_text(path, limit=files.EVENT_LOG_LIMIT)
    except files.UnreadableFileError as error:
        raise DataError(f"{path}: {error}, so not an event log") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or not {"event_type", "key", "time_ms"} <= set(event):
                raise ValueError("missing event_type, key or time_ms")
            if not (isinstance(event["event_type"], str) and isinstance(event["key"], str)
                    and isinstance(event["time_ms"], (int, float)) and not isinstance(event["time_ms"], bool)
                    and isinstance(event.get("metadata") or {}, dict)):
                raise ValueError("event_type and key must be text, time_ms a number, metadata an object")
            counts = {k: v for k, v in (event.get("metadata") or {}).items() if k in COUNT_FIELDS}
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in counts.values()):
                raise ValueError(f"metadata {', '.join(sorted(counts))} must be numbers")
        except (ValueError, RecursionError) as error:
            verdict.problems["run_once"].append(f"line {number} is not an event ({one_line(error, 120)})")
            return verdict
        events.append(event)
    return check_events(events)
