"""The commands that read runs back or look after the store: import-published, compare, check, check-log, sync, ui."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path
from typing import Any

import click

from suite import names, registry
from suite.cli.base import check_names, cli, experiment_option, names_option_values, print_run_links
from suite.errors import BenchError, RunError, one_line


@cli.command("import-published")
@click.option("--vendors", default="", help="Comma-separated vendors to import (default: every vendor with a "
              "published.yaml).")
@experiment_option("accelbench", "MLflow experiment of the runs.")
def import_published_command(vendors: str, experiment: str) -> None:
    """Record the published results pages as runs tagged bench.source=published (idempotent)."""
    from suite.results.published import import_published, load_published, published_vendors

    chosen = names_option_values(vendors) or None
    if chosen:
        check_names("vendor with published results", chosen, published_vendors())
    rows = load_published(chosen)  # every cell is parsed before anything is written
    report = import_published(rows, experiment=experiment)  # one import per experiment at a time (a lock)
    _tag_project_run("import", {"created": len(report.created), "unchanged": len(report.unchanged),
                                "replaced": len(report.replaced), "removed": len(report.removed)})
    click.echo(f"published rows: {len(rows)}; created {len(report.created)}, unchanged {len(report.unchanged)}, "
               f"replaced {len(report.replaced)}, removed {len(report.removed)} "
               f"(experiment {experiment!r}, id {report.experiment_id})")


def _tag_project_run(kind: str, metrics: dict[str, float]) -> None:
    """Under `mlflow run`, the run MLflow created records what this command did (it is not a benchmark run)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    from suite.tracking.client import client as mlflow_client

    client = mlflow_client()
    client.set_tag(run_id, names.TAG_KIND, kind)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)


def experiment_counts(frame: Any) -> str:
    """"accelbench 40, Default 1": where the compared runs were found, so a run in an unexpected experiment shows."""
    from suite.tracking.client import client as mlflow_client

    client = mlflow_client()
    counts = frame["experiment_id"].value_counts()
    named = []
    for experiment_id, count in counts.items():
        found = client.get_experiment(str(experiment_id))
        named.append(f"{found.name if found else experiment_id} {count}")
    return ", ".join(named)


@cli.command("compare")
@click.option("--case", "cases", multiple=True, help="Case(s) to compare, comma-separated or repeated "
              "(default: every case with runs).")
@click.option("--vendors", default="", help="Comma-separated vendors (default: all).")
@click.option("--baseline", default="nvidia_a100", show_default=True, help="Vendor the ratios are relative to.")
@click.option("--source", type=click.Choice(["all", "measured", "published"]), default="all", show_default=True)
@experiment_option("accelbench", "MLflow experiment the comparison run is recorded in.")
@click.option("--search-experiments", "search_experiments", default="", metavar="NAME[,NAME...]",
              help="Only search these experiments for benchmark runs (default: every experiment: a run started "
                   "by `mlflow run` without --experiment-name is in \"Default\").")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("comparison"),
              show_default=True, help="Folder for comparison.md/.csv/.html and the charts.")
@click.option("--no-record", is_flag=True, help="Do not record a comparison run in MLflow.")
@click.option("--wide", is_flag=True, help="Print every column (the default view fits 120 characters; the files "
              "always hold every column).")
@click.option("--all-versions", is_flag=True, help="Show the published rows of every page version (default: the "
              "newest version of each vendor's page).")
def compare_command(cases: tuple[str, ...], vendors: str, baseline: str, source: str, experiment: str,
                    search_experiments: str, out: Path, no_record: bool, wide: bool, all_versions: bool) -> None:
    """Published-page tables per case: measured and published rows side by side, ratios, scaling, charts."""
    from suite.errors import DataError
    from suite.results.comparison import compare
    from suite.results.query import runs
    from suite.results.report import record_comparison_run, terminal_report, write_report

    case_names = names_option_values(cases) or None
    vendor_names = names_option_values(vendors) or None
    check_names("case", case_names or [], sorted(registry.cases()))
    check_names("vendor", [*(vendor_names or []), baseline], registry.vendors())
    searched = names_option_values(search_experiments) or None
    # Benchmark runs are found by their bench.* tags wherever they were recorded, as suite.results.runs does.
    frame = runs(case=case_names, vendor=vendor_names, source=None if source == "all" else source,
                 experiments=searched)
    where = f"experiment(s) {', '.join(searched)}" if searched else "any experiment"
    if frame.empty:
        wanted = ", ".join(f"{k}={','.join(v)}" for k, v in (("case", case_names), ("vendors", vendor_names),
                                                             ("source", [source] if source != "all" else None))
                           if v)
        raise DataError(f"no finished runs match {wanted or 'anything'} in {where}; run "
                        f"`accelbench import-published` or a benchmark first")
    comparison = compare(runs_frame=frame, baseline=baseline, all_versions=all_versions)
    click.echo(f"runs compared, by experiment: {experiment_counts(comparison.runs)}")
    click.echo(terminal_report(comparison, wide=wide), nl=False)
    report = write_report(comparison, out)
    click.echo(textwrap.fill(f"wrote {', '.join(p.name for p in report.files)} to {out}", 120,
                             break_on_hyphens=False, break_long_words=False))
    if not no_record:
        run_id = record_comparison_run(comparison, report, experiment)
        click.echo(f"comparison run: {run_id}")
        print_run_links([run_id], artifact=names.ARTIFACT_REPORT_HTML)


TOO_NOISY_EXIT = 3  # `check`: no regression found, but a baseline too noisy to judge some metric


class BaselineTooNoisyError(RunError):
    exit_code = TOO_NOISY_EXIT
    prefix = ""


@cli.command("check")
@click.argument("run_id")
@click.option("--against", "baseline", required=True, metavar="RUN_ID[,RUN_ID...]|VENDOR/CASE/NxM",
              help="Baseline: a run id (pooled with its repeats), several run ids, or vendor/case/topology (newest "
                   "measured run, else the published row).")
@click.option("--exact", is_flag=True, help="Take exactly the runs named, not every repeat of their config.")
@click.option("--threshold", default=0.05, show_default=True, type=click.FloatRange(min=0),
              help="Smallest relative noise threshold; the baseline runs' spread widens it.")
@click.option("--max-threshold", default=0.25, show_default=True, type=click.FloatRange(min=0),
              help="Largest noise threshold: a baseline whose runs spread more is too noisy to judge (exit 3).")
def check_command(run_id: str, baseline: str, exact: bool, threshold: float, max_threshold: float) -> None:
    """Regression gate: compare a run with a baseline. Exit 0: no regression; 1: a metric is worse by more than
    the noise; 2: bad input; 3: no regression, but the baseline is too noisy to judge some metric."""
    from suite.results.regression import gate
    from suite.tables import render_table
    from suite.tracking.client import client as mlflow_client

    result = gate(mlflow_client(), run_id, baseline, threshold, exact=exact, max_threshold=max_threshold)
    click.echo(result.baseline_line())
    rows = [{"metric": c.metric, "baseline": f"{c.baseline:.4g}", "candidate": f"{c.candidate:.4g}",
             "change": f"{100 * c.change:+.1f}% {c.direction}", "threshold": f"{100 * c.threshold:.1f}%",
             "threshold_from": c.threshold_from, "verdict": c.verdict}
            for c in result.checks]
    click.echo(render_table(rows, ("metric", "baseline", "candidate", "change", "threshold", "threshold_from",
                                   "verdict")))
    if result.regressions:
        raise RunError(f"{len(result.regressions)} regression(s): "
                       + ", ".join(f"{c.metric} {100 * abs(c.change):.1f}% worse" for c in result.regressions))
    if result.too_noisy:
        raise BaselineTooNoisyError(
            "baseline too noisy to judge " + ", ".join(c.metric for c in result.too_noisy)
            + f" (spread over the {100 * max_threshold:.0f}% cap): record more repeats, or name steadier runs "
              "with --exact")


@cli.command("check-log")
@click.argument("path", type=click.Path(path_type=Path))
def check_log_command(path: Path) -> None:
    """Apply the MLPerf-style event-log rules to an events.jsonl; exit 1 if it is not compliant."""
    from suite.engine.compliance import check_log
    from suite.errors import DataError

    if not path.exists():
        raise DataError(f"{path}: no such event log")
    verdict = check_log(path)
    click.echo(verdict.report())
    if not verdict.passed:
        raise RunError(f"{path} is not compliant: {verdict.tag()}")


@cli.command("sync")
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Upload again folders already synced (nothing is duplicated).")
def sync_command(folders: tuple[Path, ...], force: bool) -> None:
    """Upload runs recorded while the tracking server was unreachable (default: every one in the spool root).

    A journal whose run is still in progress is left alone; a journal that cannot be uploaded is reported and the
    others are still synced (exit 2 for a malformed journal, 1 for an upload that failed).
    """
    from suite.errors import DataError
    from suite.tracking.spool import InProgressError, pending, spool_root, sync

    chosen = list(folders) or pending(spool_root())
    if not chosen:
        click.echo(f"nothing to sync in {spool_root()}")
        return
    for folder in chosen:
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
    problems: list[Exception] = []
    for folder in chosen:
        try:
            result = sync(folder, force=force)
        except InProgressError as e:
            click.echo(f"{e}: left alone")
            continue
        except BenchError as e:  # a malformed journal: the others are still worth uploading
            click.echo(f"accelbench: error: {e}", err=True)
            problems.append(e)
            continue
        except Exception as e:  # the server failed mid-upload; the run it created is marked FAILED, retry later
            click.echo(f"accelbench: {folder}: upload failed: {one_line(e)}; run `accelbench sync {folder}` again",
                       err=True)
            problems.append(e)
            continue
        if result.already:
            click.echo(f"{folder}: already synced as run {result.run_id} (--force to upload again)")
            continue
        click.echo(f"{folder}: {'created' if result.created else 'completed'} run {result.run_id} "
                   f"({result.status}; {result.metrics} metric values, {result.artifacts} artifacts uploaded)")
    if problems:
        code = max(getattr(e, "exit_code", RunError.exit_code) for e in problems)
        raise click.exceptions.Exit(code)


@cli.command("ui")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(min=0, max=65535),
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server worker processes.")
def ui_command(port: int, workers: int) -> None:
    """Serve the MLflow UI on 127.0.0.1 for the store the runs went to (MLFLOW_TRACKING_URI, else ./mlflow.db)."""
    from suite.launch.ui import serve

    code = serve(port, workers, click.echo, server_log=logging.getLogger("suite").isEnabledFor(logging.DEBUG))
    if code:
        raise RunError(f"the MLflow server exited with code {code}")

