"""What the benchmark scripts share: a private MLflow store, real suite runs, the machine's name, the result line.

Every script ends by calling `finish()`, which prints its ratio line last (the figure, its target and whether it is
met) and, with `--json FILE`, writes the same figures for `benchmarks/publish.py` to put in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def private_store() -> str:
    """Point MLflow at a fresh SQLite store in a temp folder (the user's store is left alone); return its URI."""
    folder = Path(tempfile.mkdtemp(prefix="accelbench-bench-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.setdefault("ACCELBENCH_SPOOL", str(folder / "spool"))
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    return uri


def add_run_arguments(parser: argparse.ArgumentParser, *, case: str = "faster_rcnn") -> None:
    """The options of scripts that train: which case and vendor, and `--set` overrides as in `accelbench run`."""
    parser.add_argument("--case", default=case)
    parser.add_argument("--vendor", default="cpu", help="cpu, nvidia_h100, ... (its 1x1 config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as `accelbench run --set` (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")


def resolve_throughput(case: str, vendor: str, overrides: Sequence[str]) -> Any:
    """The 1x1 throughput-mode config of `case` on `vendor`, with the script's overrides last."""
    from suite.config import resolve

    return resolve(case, vendor, "1x1", ["train.mode=throughput", *overrides])


def suite_run(resolved: Any) -> dict[str, float]:
    """One real `accelbench run` (tracking, timers, event log, spool) on synthetic data; its summary metrics."""
    import logging

    from suite.launch import runner

    logging.getLogger("suite").setLevel(logging.WARNING)
    outcome = runner.run(resolved, synthetic=True, started_at=time.time())
    if outcome.status != "FINISHED":
        raise SystemExit(f"suite run {outcome.run_id} ended {outcome.status}: {outcome.failure}")
    return outcome.metrics


def machine() -> str:
    """The accelerator if there is one, else the CPU, with the core count."""
    import torch

    from suite.vendors.host import cpu_model

    cores = os.cpu_count() or 0
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {cores} CPU cores"
    return f"{cpu_model() or platform.machine()} ({cores} cores), no GPU"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def finish(name: str, *, figure: float, unit: str, target: float | None, higher_is_better: bool = True,
           details: dict[str, Any], json_path: Path | None, verdict: str | None = None) -> None:
    """Print the ratio line (last) and write the JSON record; `verdict` overrides the one from the target."""
    if verdict is None and target is None:
        verdict = "its target is for a GPU"
    elif verdict is None:
        met = figure >= target if higher_is_better else figure <= target
        verdict = "meets" if met else "MISSES"
    comparison = ">=" if higher_is_better else "<="
    target_text = f"target {comparison} {target:g}{unit}: " if target is not None else ""
    line = f"{name}: {figure:.3f}{unit} ({target_text}{verdict})"
    if json_path is not None:
        record = {"benchmark": name, "figure": round(figure, 4), "unit": unit, "target": target,
                  "comparison": comparison, "verdict": verdict, "machine": machine(),
                  "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv]),
                  "details": details}
        # A script with several figures calls finish() once per figure: the file then holds a list of records.
        if json_path.is_file() and json_path.stat().st_size:
            earlier = json.loads(json_path.read_text(encoding="utf-8"))
            record = [*(earlier if isinstance(earlier, list) else [earlier]), record]
        json_path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(line, flush=True)
