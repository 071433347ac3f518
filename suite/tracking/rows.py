"""Results-table rows in the published pages' columns: of a run just finished, or of one read back from MLflow."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from suite import names
from suite.tracking.client import client as mlflow_client

COLUMNS = ("case", "vendor", "topology", "precision", "fix_hp", "status", names.E2E_TIME, names.P_WHOLE,
           names.P_TRAIN, names.P_CORE, "mAP", names.MEM_SMI, names.MEM, "run_id")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def outcome_row(outcome: Any) -> dict[str, str]:
    """One table row from a RunOutcome (suite.launch.runner)."""
    config = outcome.resolved.config
    metrics = outcome.metrics
    # The published pages write Mask R-CNN's result as "bbox && segm".
    map_text = " && ".join(f"{outcome.final_map[k]:.4f}" for k in (names.MAP, names.MAP_SEGM)
                           if k in outcome.final_map)
    # The device tool's used/total (what the published pages print as mem), and the allocator's peak on its own.
    used = metrics.get(names.MEM_SMI)
    total = metrics.get(names.MEM_TOTAL)
    return {
        "case": config.case,
        "vendor": config.vendor,
        "topology": config.topology,
        "precision": config.train.precision,
        "fix_hp": outcome.resolved.fix_hp_label,
        # the row printed is then the one complete copy of the figures: it says so
        "status": f"{outcome.status}, NOT RECORDED" if getattr(outcome, "unrecorded", None) else outcome.status,
        names.E2E_TIME: _fmt(metrics.get(names.E2E_TIME), 1),
        names.P_WHOLE: _fmt(metrics.get(names.P_WHOLE)),
        names.P_TRAIN: _fmt(metrics.get(names.P_TRAIN)),
        names.P_CORE: _fmt(metrics.get(names.P_CORE)),
        "mAP": map_text,
        names.MEM_SMI: f"{used:.1f}/{total:.1f}" if used is not None and total is not None else _fmt(used, 1),
        names.MEM: _fmt(metrics.get(names.MEM), 1),
        "run_id": outcome.run_id,
    }


def mlflow_run_row(resolved: Any, run_id: str) -> dict[str, str]:
    """The table row of a run read back from MLflow (a launched job's rank 0 recorded it, not this process)."""

    run = mlflow_client().get_run(run_id)
    metrics = run.data.metrics
    final_map = {k: v for k, v in metrics.items() if k in (names.MAP, names.MAP_SEGM)}
    return outcome_row(SimpleNamespace(resolved=resolved, metrics=metrics, run_id=run_id, status=run.info.status,
                                       final_map=final_map))
