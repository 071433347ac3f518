"""Query recorded runs as pandas DataFrames with stable column names.

Everything here goes through MLflow's client search API (`MlflowClient.search_runs`, with the tracking URI passed
to the client, never swapped process-wide), so it works the same against a local SQLite file and a tracking server:

    >>> from suite import results
    >>> results.runs(case="mask_rcnn", source="published")[["vendor", "topology", "map", "map_segm"]]

Column names are the design's names (`case`, `vendor`, `topology`, `p_core`, `map`, ...), not MLflow's
`tags.bench.case` spellings, and they do not change between releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from suite import names
from suite.tracking.client import client as mlflow_client
from suite.tracking.client import tag_clause

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
    "page_version": names.TAG_PAGE_VERSION,
    "superseded": names.TAG_SUPERSEDED,
    "p_whole_clock": names.TAG_P_WHOLE_CLOCK,
    "reproduces": names.TAG_REPRODUCES,
    "cpu_fallback_ops": names.MATH_TAG_PREFIX + "cpu_fallback_ops",
    "parent_run_id": names.TAG_PARENT_RUN,
    "git_commit": names.TAG_GIT_COMMIT,
    "kind": names.TAG_KIND,
}
PARAM_COLUMNS = {"bs": names.PARAM_BS, "lr": names.PARAM_LR, "global_bs": names.PARAM_GLOBAL_BS}
METRIC_COLUMNS = (*names.SUMMARY_METRICS, names.MAP_BEST, names.MAP_SEGM_BEST, names.MEM_RESERVED, names.MEM_SMI,
                  names.P_CORE_UNSYNCED, names.P_WHOLE_WITH_INIT, names.INIT_EVAL_TIME, names.IMAGES, names.STEPS)
RUN_COLUMNS = ("run_id", "run_name", "experiment_id", "status", "start_time")
COLUMNS = (*RUN_COLUMNS, *TAG_COLUMNS, *PARAM_COLUMNS, *METRIC_COLUMNS)
INT_COLUMNS = ("nnodes", "nproc_per_node", "world_size", "round", "bs", "global_bs")

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
    client = mlflow_client(tracking_uri)
    filters = {"case": _as_list(case), "vendor": _as_list(vendor), "topology": _as_list(topology),
               "source": _as_list(source), "precision": _as_list(precision), "mode": _as_list(mode)}
    if experiments is None:
        ids = [e.experiment_id for e in _all_experiments(client)]
    else:
        ids = [e.experiment_id for name in experiments if (e := client.get_experiment_by_name(name))]
    if not ids:
        return _empty()
    found: list[Any] = []
    token = None
    while len(found) < max_results:
        page = client.search_runs(ids, _filter_string(filters, status),
                                  max_results=min(1000, max_results - len(found)),
                                  order_by=["attributes.start_time DESC"], page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            break
    frame = _normalise(_raw_frame(found))
    frame = frame[frame["case"].notna() & frame["kind"].isna()]
    for column, values in filters.items():
        if values is not None and len(values) > 1:
            frame = frame[frame[column].isin(values)]
    return frame.reset_index(drop=True)


def _all_experiments(client: Any) -> list[Any]:
    experiments, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments


def _raw_frame(found: Sequence[Any]) -> pd.DataFrame:
    """Runs as MLflow's own DataFrame spells them (`tags.x`, `params.x`, `metrics.x` columns)."""
    rows = []
    for run in found:
        row = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "status": run.info.status,
               "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True)}
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows)


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


def map_history(run_ids: Sequence[str], tracking_uri: str | None = None) -> pd.DataFrame:
    """Per-epoch mAP curves (`map`, `map_segm` with step = epoch) of the given runs."""
    rows = []
    client = mlflow_client(tracking_uri)
    for run_id in run_ids:
        for metric in (names.MAP, names.MAP_SEGM):
            for point in client.get_metric_history(run_id, metric):
                rows.append({"run_id": run_id, "metric": metric, "epoch": point.step, "value": point.value})
    return pd.DataFrame(rows, columns=["run_id", "metric", "epoch", "value"])
