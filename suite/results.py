"""Query recorded runs as pandas DataFrames with stable column names, and build the comparison tables.

Everything here goes through MLflow's public search API (`mlflow.search_runs`, `MlflowClient`), so it works the same
against a local SQLite file and a tracking server:

    >>> from suite import results
    >>> results.runs(case="mask_rcnn", source="published")[["vendor", "topology", "map", "map_segm"]]
    >>> comparison = results.compare(case="faster_rcnn", baseline="nvidia_a100")
    >>> comparison.table, comparison.scaling

Column names are the design's names (`case`, `vendor`, `topology`, `p_core`, `map`, ...), not MLflow's
`tags.bench.case` spellings, and they do not change between releases.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from suite import names
from suite.config import case_defaults, parse_topology
from suite.errors import BenchError
from suite.scaling import THROUGHPUTS, efficiencies
from suite.tracking import tag_clause

TAG_COLUMNS = {
    "source": names.TAG_SOURCE,
    "case": names.TAG_CASE,
    "vendor": names.TAG_VENDOR,
    "accelerator": names.TAG_ACCELERATOR,
    "topology": names.TAG_TOPOLOGY,
    "nnodes": names.TAG_NNODES,
    "nproc_per_node": names.TAG_NPROC_PER_NODE,
    "world_size": names.TAG_WORLD_SIZE,
    "precision": names.TAG_PRECISION,
    "precision_published": names.TAG_PRECISION_PUBLISHED,
    "fix_hp": names.TAG_FIX_HP,
    "mode": names.TAG_MODE,
    "round": names.TAG_ROUND,
    "config_hash": names.TAG_CONFIG_HASH,
    "converged": names.TAG_CONVERGED,
    "failure": names.TAG_FAILURE,
    "published_note": names.TAG_PUBLISHED_NOTE,
    "parent_run_id": names.TAG_PARENT_RUN,
    "git_commit": names.TAG_GIT_COMMIT,
    "kind": names.TAG_KIND,
}
PARAM_COLUMNS = {"bs": names.PARAM_BS, "lr": names.PARAM_LR, "global_bs": names.PARAM_GLOBAL_BS}
METRIC_COLUMNS = (*names.SUMMARY_METRICS, names.MAP_BEST, names.MAP_SEGM_BEST, names.MEM_RESERVED, names.MEM_SMI,
                  names.P_CORE_UNSYNCED, names.IMAGES, names.STEPS)
RUN_COLUMNS = ("run_id", "run_name", "experiment_id", "status", "start_time")
COLUMNS = (*RUN_COLUMNS, *TAG_COLUMNS, *PARAM_COLUMNS, *METRIC_COLUMNS)
INT_COLUMNS = ("nnodes", "nproc_per_node", "world_size", "round", "bs", "global_bs")

# The comparison table: one row per group of repeats.
GROUP_KEYS = ("case", "source", "vendor", "accelerator", "topology", "precision", "fix_hp", "mode", "bs", "lr")
TABLE_METRICS = (names.E2E_TIME, names.P_WHOLE, names.P_TRAIN, names.P_CORE, names.P_CORE_UNSYNCED, names.MAP,
                 names.MAP_SEGM, names.MEM, names.MEM_TOTAL, names.MEM_SMI)
# How each source timed p_core: measured runs synchronise the device at the window edges; the published pages used
# a host clock that stops when optimizer.step() returns (measured runs record that figure too, as p_core_unsynced).
TIMING = {names.SOURCE_MEASURED: "synchronised", names.SOURCE_PUBLISHED: "host clock"}
DEFAULT_BASELINE = "nvidia_a100"


@contextlib.contextmanager
def _tracking_uri(uri: str | None) -> Iterator[None]:
    import mlflow

    if uri is None:
        yield
        return
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _filter_string(filters: dict[str, list[str] | None], status: str | None) -> str:
    clauses = []
    for column, values in filters.items():
        if values is not None and len(values) == 1:  # MLflow's grammar has no OR; lists are filtered afterwards
            clauses.append(tag_clause(TAG_COLUMNS[column], values[0]))
    if status:
        clauses.append(f"attributes.status = '{status}'")
    return " AND ".join(clauses)


def runs(case: str | Sequence[str] | None = None, vendor: str | Sequence[str] | None = None,
         topology: str | Sequence[str] | None = None, source: str | Sequence[str] | None = None,
         precision: str | Sequence[str] | None = None, mode: str | Sequence[str] | None = None,
         status: str | None = "FINISHED", experiments: Sequence[str] | None = None,
         tracking_uri: str | None = None, max_results: int = 100_000) -> pd.DataFrame:
    """Benchmark runs (measured and published), one row each, newest first.

    Each filter takes a value or a list of values. `status=None` includes FAILED, KILLED and RUNNING runs.
    `experiments` names the experiments to search (default: all). Matrix parents and comparison runs are not
    benchmark runs and are left out.
    """
    import mlflow

    filters = {"case": _as_list(case), "vendor": _as_list(vendor), "topology": _as_list(topology),
               "source": _as_list(source), "precision": _as_list(precision), "mode": _as_list(mode)}
    with _tracking_uri(tracking_uri):
        if experiments is None:
            raw = mlflow.search_runs(search_all_experiments=True, filter_string=_filter_string(filters, status),
                                     max_results=max_results, order_by=["attributes.start_time DESC"])
        else:
            client = mlflow.MlflowClient()
            ids = [e.experiment_id for name in experiments if (e := client.get_experiment_by_name(name))]
            if not ids:
                return _empty()
            raw = mlflow.search_runs(experiment_ids=ids, filter_string=_filter_string(filters, status),
                                     max_results=max_results, order_by=["attributes.start_time DESC"])
    frame = _normalise(raw)
    frame = frame[frame["case"].notna() & frame["kind"].isna()]
    for column, values in filters.items():
        if values is not None and len(values) > 1:
            frame = frame[frame[column].isin(values)]
    return frame.reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return _normalise(pd.DataFrame())


def _normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """MLflow's `tags.x` / `params.x` / `metrics.x` columns -> the stable column set, typed."""
    out = pd.DataFrame(index=raw.index)

    def column(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series([None] * len(raw), index=raw.index, dtype=object)

    out["run_id"] = column("run_id")
    out["run_name"] = column("tags.mlflow.runName")
    out["experiment_id"] = column("experiment_id")
    out["status"] = column("status")
    out["start_time"] = column("start_time")
    for name, tag in TAG_COLUMNS.items():
        out[name] = column(f"tags.{tag}")
    for name, param in PARAM_COLUMNS.items():
        out[name] = column(f"params.{param}")
    for name in METRIC_COLUMNS:
        out[name] = pd.to_numeric(column(f"metrics.{name}"), errors="coerce").astype(float)
    for name in INT_COLUMNS:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("Int64")
    out["lr"] = pd.to_numeric(out["lr"], errors="coerce").astype(float)
    for name in [*RUN_COLUMNS, *TAG_COLUMNS]:
        if name not in ("start_time", *INT_COLUMNS):  # text columns: missing is None, never NaN
            out[name] = pd.Series([v if isinstance(v, str) else None for v in out[name]], index=out.index,
                                  dtype=object)
    return out[list(COLUMNS)]


# --- comparison ---------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """The comparison tables of `compare`.

    table     one row per group of repeats (GROUP_KEYS): `n` runs, the median of each metric with `<metric>_min`,
              `<metric>_max` and `<metric>_spread` ((max - min) / median), `p_core_timing` (how the row's p_core was
              timed), the throughput ratios to the baseline (`<metric>_vs_baseline`; p_core on the host-clock
              definition when the two rows were timed differently; `baseline` names the row used), and `scaling`
              (p_core efficiency)
    scaling   efficiencies per (case, source, vendor, precision, bs) and topology, for p_whole/p_train/p_core
    runs      the runs the tables were built from
    """

    table: pd.DataFrame
    scaling: pd.DataFrame
    runs: pd.DataFrame
    baseline: str


def compare(case: str | Sequence[str] | None = None, vendors: Sequence[str] | None = None,
            baseline: str = DEFAULT_BASELINE, runs_frame: pd.DataFrame | None = None, **filters: Any) -> Comparison:
    """The published-page comparison: measured and published rows side by side, ratios and scaling.

    `runs_frame` reuses a frame from `runs()`; otherwise the runs are searched with `case`, `vendors` and any other
    `runs()` filter.
    """
    frame = runs_frame if runs_frame is not None else runs(case=case, vendor=vendors, **filters)
    if runs_frame is not None:
        for column, values in (("case", _as_list(case)), ("vendor", _as_list(vendors))):
            if values is not None:
                frame = frame[frame[column].isin(values)]
    table = _aggregate(frame)
    scaling = _scaling(frame)
    table = _attach_ratios(table, baseline)
    table = _attach_scaling(table, scaling)
    return Comparison(table=_sorted(table, baseline), scaling=scaling, runs=frame.reset_index(drop=True),
                      baseline=baseline)


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
        row["precision_published"] = next((p for p in group["precision_published"] if isinstance(p, str)), None)
        row["published_note"] = next((p for p in group["published_note"] if isinstance(p, str)), None)
        for metric in TABLE_METRICS:
            values = [float(v) for v in group[metric] if pd.notna(v)]
            median = statistics.median(values) if values else None
            row[metric] = median
            row[f"{metric}_min"] = min(values) if values else None
            row[f"{metric}_max"] = max(values) if values else None
            row[f"{metric}_spread"] = ((max(values) - min(values)) / median) if values and median else None
        row["target_met"] = _target_met(row, converged)
        rows.append(row)
    columns = [*GROUP_KEYS, "n", "p_core_timing", "target_met", "precision_published", "published_note", "run_ids",
               *[f"{m}{suffix}" for m in TABLE_METRICS for suffix in ("", "_min", "_max", "_spread")]]
    table = pd.DataFrame(rows, columns=columns)
    for key in ("bs", "lr", "fix_hp"):
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


def _host_clock_p_core(row: pd.Series) -> float | None:
    if row["p_core_timing"] == TIMING[names.SOURCE_PUBLISHED]:
        return row[names.P_CORE]
    return row[names.P_CORE_UNSYNCED]


def _attach_ratios(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    table = table.copy()
    candidates = table[table["vendor"] == baseline]
    labels, ratios = [], {m: [] for m in THROUGHPUTS}
    for _, row in table.iterrows():
        base = _baseline_row(row, candidates)
        fix_hp = "/" if base is None or not isinstance(base["fix_hp"], str) else base["fix_hp"]
        labels.append(None if base is None else f"{base['vendor']} {base['topology']} {fix_hp} ({base['source']})")
        for metric in THROUGHPUTS:
            mine, theirs = (row[metric], base[metric]) if base is not None else (None, None)
            if metric == names.P_CORE and base is not None and row["p_core_timing"] != base["p_core_timing"]:
                # Compare on one definition: the host clock, which both sides have.
                mine, theirs = _host_clock_p_core(row), _host_clock_p_core(base)
            value = None
            if mine is not None and theirs is not None and pd.notna(mine) and pd.notna(theirs) and theirs:
                value = mine / theirs
            ratios[metric].append(value)
    # Name the baseline row only where a ratio was computed from it.
    table["baseline"] = [label if any(ratios[m][i] is not None for m in THROUGHPUTS) else None
                         for i, label in enumerate(labels)]
    for metric in THROUGHPUTS:
        table[f"{metric}_vs_baseline"] = pd.Series(ratios[metric], index=table.index, dtype=float)
    return table


def _scaling(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    keys = ["case", "source", "vendor", "precision", "bs"]
    for key, group in _blank_missing(frame, keys).groupby(keys, sort=False):
        per_metric = {}
        for metric in THROUGHPUTS:
            by_topology: dict[str, list[float]] = {}
            for topology, value in zip(group["topology"], group[metric], strict=True):
                if pd.notna(value):
                    by_topology.setdefault(topology, []).append(float(value))
            per_metric[metric] = efficiencies(by_topology)
        for topology in sorted({t for e in per_metric.values() for t in e}, key=parse_topology):
            nodes, per_node = parse_topology(topology)
            row = dict(zip(keys, key, strict=True))
            row["topology"] = topology
            row["reference"] = "1x1" if nodes == 1 else f"1x{per_node}"
            row.update({metric: per_metric[metric].get(topology) for metric in THROUGHPUTS})
            rows.append(row)
    scaling = pd.DataFrame(rows, columns=[*keys, "topology", "reference", *THROUGHPUTS])
    scaling["bs"] = scaling["bs"].replace("", None)
    return scaling


def _attach_scaling(table: pd.DataFrame, scaling: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    lookup = {(r.case, r.source, r.vendor, r.precision, r.bs, r.topology): r.p_core
              for r in scaling.itertuples() if pd.notna(r.p_core)}
    table["scaling"] = [lookup.get((r.case, r.source, r.vendor, r.precision, r.bs, r.topology))
                        for r in table.itertuples()]
    table["scaling"] = table["scaling"].astype(float)
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


def map_history(run_ids: Sequence[str], tracking_uri: str | None = None) -> pd.DataFrame:
    """Per-epoch mAP curves (`map`, `map_segm` with step = epoch) of the given runs."""
    import mlflow

    rows = []
    client = mlflow.MlflowClient(tracking_uri)
    for run_id in run_ids:
        for metric in (names.MAP, names.MAP_SEGM):
            for point in client.get_metric_history(run_id, metric):
                rows.append({"run_id": run_id, "metric": metric, "epoch": point.step, "value": point.value})
    return pd.DataFrame(rows, columns=["run_id", "metric", "epoch", "value"])
