"""The published-page comparison tables: measured and published rows side by side, repeats reduced to their
median with their spread, ratios to a baseline accelerator taken only between figures of one definition
(suite.results.definitions), scaling efficiency and whether convergence rows reached their targets. Published rows
of a page that a newer version of the same page supersedes are left out unless every version is asked for.

    >>> from suite import results
    >>> comparison = results.compare(case="faster_rcnn", baseline="nvidia_a100")
    >>> comparison.table, comparison.scaling
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from suite import names
from suite.config import case_defaults
from suite.errors import BenchError
from suite.results.definitions import MODE_DEPENDENT, counterpart
from suite.results.query import _as_list, runs
from suite.results.scaling import THROUGHPUTS, efficiencies, implausible, spread_note
from suite.topology import parse_topology

# The comparison table: one row per group of repeats.
GROUP_KEYS = ("case", "source", "vendor", "accelerator", "topology", "precision", "fix_hp", "mode", "bs", "lr",
              "page_version")
TABLE_METRICS = (names.E2E_TIME, names.P_WHOLE, names.P_WHOLE_WITH_INIT, names.P_TRAIN, names.P_CORE,
                 names.P_CORE_UNSYNCED, names.MAP, names.MAP_SEGM, names.MEM_SMI, names.MEM_TOTAL, names.MEM)
# Text facts of a group that are the same for its repeats; the first one found is kept.
GROUP_FACTS = ("precision_published", "published_note", "p_whole_clock", "reproduces", "cpu_fallback_ops")
# How each source timed p_core: measured runs synchronise the device at the window edges; the published pages used
# a host clock that stops when optimizer.step() returns (measured runs record that figure too, as p_core_unsynced).
TIMING = {names.SOURCE_MEASURED: "synchronised", names.SOURCE_PUBLISHED: "host clock"}
DEFAULT_BASELINE = "nvidia_a100"


@dataclass
class Comparison:
    """The comparison tables of `compare`.

    table     one row per group of repeats (GROUP_KEYS): `n` runs, the median of each metric with `<metric>_min`,
              `<metric>_max` and `<metric>_spread` ((max - min) / median), `p_core_timing` (how the row's p_core was
              timed), the throughput ratios to the baseline (`<metric>_vs_baseline`; p_core on the host-clock
              definition when the two rows were timed differently; `baseline` names the row used), `scaling`
              (p_core efficiency) and `implausible` (why a figure of the row cannot be trusted as it stands: a
              scaling efficiency above 1.05, or repeats that spread more than the difference reported; "" if none)
    scaling   efficiencies per (case, source, vendor, precision, bs) and topology, for p_whole/p_train/p_core, and
              their `implausible` notes
    runs      the runs the tables were built from
    """

    table: pd.DataFrame
    scaling: pd.DataFrame
    runs: pd.DataFrame
    baseline: str


def compare(case: str | Sequence[str] | None = None, vendors: Sequence[str] | None = None,
            baseline: str = DEFAULT_BASELINE, runs_frame: pd.DataFrame | None = None, all_versions: bool = False,
            **filters: Any) -> Comparison:
    """The published-page comparison: measured and published rows side by side, ratios and scaling.

    `runs_frame` reuses a frame from `runs()`; otherwise the runs are searched with `case`, `vendors` and any other
    `runs()` filter. Published rows of superseded page versions are left out unless `all_versions`.
    """
    frame = runs_frame if runs_frame is not None else runs(case=case, vendor=vendors, **filters)
    if runs_frame is not None:
        for column, values in (("case", _as_list(case)), ("vendor", _as_list(vendors))):
            if values is not None:
                frame = frame[frame[column].isin(values)]
    if not all_versions:
        frame = frame[frame["superseded"] != "true"]
    frame = _one_per_published_row(frame)
    table = _aggregate(frame)
    scaling = _scaling(frame)
    table = _attach_ratios(table, baseline)
    table = _attach_scaling(table, scaling)
    return Comparison(table=_sorted(table, baseline), scaling=scaling, runs=frame.reset_index(drop=True),
                      baseline=baseline)


def _one_per_published_row(frame: pd.DataFrame) -> pd.DataFrame:
    """A published page row imported into several experiments is one row of the page, not repeats: the newest
    import is kept (`runs()` is newest first). Measured runs are each a repeat."""
    published = frame["source"] == names.SOURCE_PUBLISHED
    duplicate = _blank_missing(frame, GROUP_KEYS).duplicated(subset=list(GROUP_KEYS), keep="first")
    return frame[~(published & duplicate)]


def _blank_missing(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """A copy whose missing `keys` are "" (groupby drops missing keys; a blank fix_hp or lr is still a group)."""
    keyed = frame.copy()
    for key in keys:
        keyed[key] = keyed[key].astype(object).where(keyed[key].notna(), "")
    return keyed


def _group_frame(frame: pd.DataFrame) -> Any:
    return _blank_missing(frame, GROUP_KEYS).groupby(list(GROUP_KEYS), sort=False, dropna=False)


def _aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, group in _group_frame(frame):
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
        row["n"] = len(group)
        row["p_core_timing"] = TIMING.get(row["source"])
        converged = {c for c in group["converged"] if isinstance(c, str)}
        row["run_ids"] = ",".join(group["run_id"].astype(str))
        for fact in GROUP_FACTS:
            row[fact] = next((p for p in group[fact] if isinstance(p, str)), None)
        for metric in TABLE_METRICS:
            values = [float(v) for v in group[metric] if pd.notna(v)]
            median = statistics.median(values) if values else None
            row[metric] = median
            row[f"{metric}_min"] = min(values) if values else None
            row[f"{metric}_max"] = max(values) if values else None
            row[f"{metric}_spread"] = ((max(values) - min(values)) / median) if values and median else None
        row["target_met"] = _target_met(row, converged)
        rows.append(row)
    columns = [*GROUP_KEYS, "n", "p_core_timing", "target_met", *GROUP_FACTS, "run_ids",
               *[f"{m}{suffix}" for m in TABLE_METRICS for suffix in ("", "_min", "_max", "_spread")]]
    table = pd.DataFrame(rows, columns=columns)
    for key in ("bs", "lr", "fix_hp", "page_version"):
        table[key] = table[key].replace("", None)
    return table


def case_targets(case: str) -> dict[str, float]:
    """The case's convergence targets (layer 1: cases/<case>/defaults.yaml `train.targets`), e.g. {"bbox": 0.36}."""
    try:
        defaults = case_defaults(case)  # read once per process, not once per table row
    except BenchError:  # a case this installation does not have: no targets to judge by
        return {}
    return {k: float(v) for k, v in (defaults.get("train") or {}).get("targets", {}).items()}


def _target_met(row: dict[str, Any], converged: set[str]) -> bool | None:
    """Convergence rows only: did the result reach every target of its case? (None where it cannot be told.)"""
    if row["mode"] != "convergence":
        return None
    if converged:  # a measured run judged itself at every evaluation
        return converged == {"true"}
    targets = case_targets(row["case"])
    values = {iou: row.get(names.IOU_TYPE_METRIC.get(iou, iou)) for iou in targets}
    if not targets or any(v is None or pd.isna(v) for v in values.values()):
        return None
    return all(values[iou] >= target for iou, target in targets.items())


def _baseline_row(row: pd.Series, candidates: pd.DataFrame) -> pd.Series | None:
    """The baseline row to divide by: same case/topology/precision, then the closest settings."""
    pool = candidates[(candidates["case"] == row["case"]) & (candidates["topology"] == row["topology"])
                      & (candidates["precision"] == row["precision"]) & candidates[names.P_CORE].notna()]
    for column in ("bs", "lr", "source", "mode", "fix_hp"):
        narrower = pool[pool[column] == row[column]]
        if len(narrower):
            pool = narrower
    if len(pool) == 1:
        return pool.iloc[0]
    return None  # no baseline, or several equally close ones: leave the ratio blank rather than guess


def _definition(metric: str, row: pd.Series, other: pd.Series) -> str | None:
    """The column of `row` that holds `metric` on `other`'s definition (a published row's figures are on their own
    page's definition; a measured row records the others too)."""
    if row["source"] == names.SOURCE_PUBLISHED:
        return metric
    return counterpart(metric, mode=row["mode"], other_mode=other["mode"],
                       other_published=other["source"] == names.SOURCE_PUBLISHED,
                       other_p_whole_clock=other["p_whole_clock"])


def _figures(metric: str, row: pd.Series, base: pd.Series) -> tuple[Any, Any]:
    """The two figures of `metric` a ratio divides, on one definition (suite.results.definitions); (None, None)
    where the rows do not measure the same thing."""
    if metric in MODE_DEPENDENT and row["mode"] != base["mode"]:
        return None, None
    mine, theirs = _definition(metric, row, base), _definition(metric, base, row)
    if mine is None or theirs is None:
        return None, None
    return row[mine], base[theirs]


def _attach_ratios(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    table = table.copy()
    candidates = table[table["vendor"] == baseline]
    labels, ratios, noisy = [], {m: [] for m in THROUGHPUTS}, []
    for _, row in table.iterrows():
        base = _baseline_row(row, candidates)
        fix_hp = "/" if base is None or not isinstance(base["fix_hp"], str) else base["fix_hp"]
        labels.append(None if base is None else f"{base['vendor']} {base['topology']} {fix_hp} ({base['source']})")
        note = None
        for metric in THROUGHPUTS:
            mine, theirs = _figures(metric, row, base) if base is not None else (None, None)
            value = None
            if mine is not None and theirs is not None and pd.notna(mine) and pd.notna(theirs) and theirs:
                value = mine / theirs
            ratios[metric].append(value)
            if metric == names.P_CORE and value is not None and base is not None and row["vendor"] != baseline:
                spreads = {"this row's": _spread(row, _definition(metric, row, base)),
                           "the baseline's": _spread(base, _definition(metric, base, row))}
                note = spread_note(value - 1, spreads, f"p_core difference to {baseline}")
        noisy.append(note or "")
    # Name the baseline row only where a ratio was computed from it.
    table["baseline"] = [label if any(ratios[m][i] is not None for m in THROUGHPUTS) else None
                         for i, label in enumerate(labels)]
    for metric in THROUGHPUTS:
        table[f"{metric}_vs_baseline"] = pd.Series(ratios[metric], index=table.index, dtype=float)
    table["implausible"] = noisy
    return table


def _spread(row: pd.Series, metric: str | None) -> float | None:
    value = row.get(f"{metric}_spread") if metric else None
    return float(value) if value is not None and pd.notna(value) else None


def _scaling(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    keys = ["case", "source", "vendor", "precision", "bs"]
    for key, group in _blank_missing(frame, keys).groupby(keys, sort=False):
        per_metric = {}
        flagged: dict[str, list[str]] = {}
        for metric in THROUGHPUTS:
            by_topology: dict[str, list[float]] = {}
            for topology, value in zip(group["topology"], group[metric], strict=True):
                if pd.notna(value):
                    by_topology.setdefault(topology, []).append(float(value))
            per_metric[metric] = efficiencies(by_topology)
            for topology, notes in implausible(by_topology, per_metric[metric]).items():
                flagged.setdefault(topology, []).extend(f"{metric} {note}" for note in notes)
        for topology in sorted({t for e in per_metric.values() for t in e}, key=parse_topology):
            nodes, per_node = parse_topology(topology)
            row = dict(zip(keys, key, strict=True))
            row["topology"] = topology
            row["reference"] = "1x1" if nodes == 1 else f"1x{per_node}"
            row.update({metric: per_metric[metric].get(topology) for metric in THROUGHPUTS})
            row["implausible"] = "; ".join(flagged.get(topology, []))
            rows.append(row)
    scaling = pd.DataFrame(rows, columns=[*keys, "topology", "reference", *THROUGHPUTS, "implausible"])
    scaling["bs"] = scaling["bs"].replace("", None)
    return scaling


def _attach_scaling(table: pd.DataFrame, scaling: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    lookup = {(r.case, r.source, r.vendor, r.precision, r.bs, r.topology): (r.p_core, r.implausible)
              for r in scaling.itertuples() if pd.notna(r.p_core)}
    found = [lookup.get((r.case, r.source, r.vendor, r.precision, r.bs, r.topology), (None, ""))
             for r in table.itertuples()]
    table["scaling"] = pd.Series([value for value, _ in found], index=table.index, dtype=float)
    table["implausible"] = ["; ".join(note for note in (ratio_note, scaling_note) if note)
                            for ratio_note, (_, scaling_note) in zip(table["implausible"], found, strict=True)]
    return table


def _sorted(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    if table.empty:
        return table.reset_index(drop=True)
    order = table.assign(
        _base=table["vendor"] != baseline,
        _topology=table["topology"].map(lambda t: parse_topology(t) if t else (0, 0)),
        _published=table["source"] != names.SOURCE_PUBLISHED,
    )
    order = order.sort_values(["case", "_base", "vendor", "_topology", "_published", "bs"], kind="stable")
    return order.drop(columns=["_base", "_topology", "_published"]).reset_index(drop=True)


