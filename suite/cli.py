"""The `accelbench` command line (also `python -m suite`).

    accelbench list                                     cases, vendors and their topologies (no torch import)
    accelbench show-config --case C --vendor V --topology NxM [--set k=v]   resolved config with sources
    accelbench run --case C --vendor V --topology NxM (--data-root DIR | --synthetic) [--config F] [--set k=v]
    accelbench smoke                                    the synthetic CPU demo of every case, then a table
    accelbench make-data --out DIR --train N --val M --size WxH
    accelbench import-published                         the published pages' rows as runs (idempotent)
    accelbench compare [--case C] [--vendors V,W] [--baseline V] [--out DIR]   tables, ratios, charts, report run
    accelbench check RUN_ID --against BASELINE          regression gate; exit 1 on a regression
    accelbench check-log FILE                           MLPerf-style rules on an events.jsonl; exit 1 if violated
    accelbench sync [DIR ...]                           upload runs recorded while the tracking server was away
    accelbench doctor --vendor V [--case C --topology NxM] [--data-root DIR] [--json]   is this machine ready?
    accelbench ui [--port P]                            the MLflow UI on 127.0.0.1 for the store the runs went to

Bad input prints one `accelbench: error: ...` line and exits 2 before any run is created; a failure during a run
marks the MLflow run FAILED and exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from suite import names, registry
from suite.config import parse_topology, read_yaml_layer, render_with_sources, resolve
from suite.errors import BenchError, RunError, one_line
from suite.precision import PRECISIONS
from suite.redaction import RedactingFormatter, redact_text
from suite.scoped_env import scoped_env

logger = logging.getLogger("suite")
SMOKE_CASES = ("faster_rcnn", "retinanet", "mask_rcnn")


LOG_LEVEL_ENV = "ACCELBENCH_LOG_LEVEL"  # inherited by matrix members and torchrun workers


def _console() -> logging.Handler:
    """The root logger's progress-aware stderr handler, added on first use."""
    from suite.progress import ConsoleHandler

    root = logging.getLogger()
    console = next((h for h in root.handlers if isinstance(h, ConsoleHandler)), None)
    if console is None:
        console = ConsoleHandler(sys.stderr)
        root.addHandler(console)
    return console


def _name_launcher(node_rank: int) -> None:
    """A multi-process job's `accelbench run` on each node is that node's launcher, not a rank: say so."""
    _console().setFormatter(RedactingFormatter(names.log_format(None, node_rank)))


def _configure_logging(level: int) -> None:
    """Console logging at `level` through the progress-aware handler; lines name their node and rank."""
    verbose = level <= logging.DEBUG
    root = logging.getLogger()
    # torchrun sets RANK and GROUP_RANK (the node) in each worker.
    where = names.log_format(os.environ.get("RANK", "0"), os.environ.get("GROUP_RANK", "0"))
    _console().setFormatter(RedactingFormatter(where))
    root.setLevel(level)
    logging.getLogger("suite").setLevel(level)
    logging.getLogger("cases").setLevel(level)
    # urllib3 warns on every retry against an unreachable tracking server; suite.spool says it once, in our words.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose else logging.ERROR)
    # MLflow's own INFO lines ("Creating initial MLflow database tables...") are noise around our one-line errors
    # and tables; -v brings them back. MLflow reads this when it is imported (after this point), and worker
    # processes inherit it. A user's own MLFLOW_LOGGING_LEVEL wins.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose else "WARNING")
    os.environ[LOG_LEVEL_ENV] = logging.getLevelName(level)


def _inherited_level() -> int:
    level = logging.getLevelName(os.environ.get(LOG_LEVEL_ENV, "INFO").upper())
    return level if isinstance(level, int) else logging.INFO


def _verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """-v/--verbose and -q/--quiet, accepted before the subcommand and after it (the later one wins)."""
    if param.name == "verbose" and value:
        _configure_logging(logging.DEBUG)
    elif param.name == "quiet" and value:
        _configure_logging(logging.WARNING)


def verbosity_options(command: Any) -> Any:
    command = click.option("-v", "--verbose", count=True, expose_value=False, callback=_verbosity,
                           help="More log output (DEBUG).")(command)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_verbosity,
                        help="Only warnings and errors: no progress.")(command)


class _Group(click.Group):
    """Every subcommand takes -v/-q too, so `accelbench run ... -q` works like `accelbench -q run ...`."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        verbosity_options(cmd)
        super().add_command(cmd, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
@click.version_option(package_name="accelbench")
def cli() -> None:
    """accelbench: accelerator training benchmarks recorded in MLflow."""


def _case_option(default: str | None = None) -> click.Option:
    return click.option("--case", required=default is None, default=default, help="Case name (see `list`).")


def _names_option_values(text: tuple[str, ...] | str) -> list[str]:
    """Names from comma-separated option values (`--cases a,b`, or a repeated `--case a --case b`)."""
    items = text if isinstance(text, tuple) else (text,)
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


vendor_option = click.option("--vendor", required=True, help="Vendor config folder (see `list`).")
topology_option = click.option("--topology", default="1x1", show_default=True, help="NxM: nodes x devices.")
config_option = click.option("--config", "config_files", multiple=True, type=click.Path(path_type=Path),
                             metavar="FILE", help="Extra YAML config layer, applied before --set. Repeatable.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a config key (YAML value), e.g. --set hp.bs=4. Repeatable.")


@cli.command("list")
def list_command() -> None:
    """List cases, vendors and the topologies each vendor has configs for."""
    case_names = registry.listed_cases()
    click.echo("cases:    " + ", ".join(case_names))
    click.echo("adapters: " + ", ".join(registry.listed_adapters()))
    click.echo("vendors:")
    for vendor in registry.vendors():
        vendor_file = registry.vendor_dir(vendor) / registry.VENDOR_FILE
        try:
            settings = read_yaml_layer(vendor_file, registry.config_source(vendor_file)).data.get("accelerator")
        except BenchError as e:  # one broken vendor folder (a plugin's, say) does not hide the others
            click.echo(f"  {vendor:<16} unusable: {e}")
            continue
        settings = settings if isinstance(settings, dict) else {}
        click.echo(f"  {vendor:<16} {settings.get('name', '?')} (adapter {settings.get('adapter', '?')})")
        for case in case_names:
            topologies = registry.topologies(vendor, case)
            if topologies:
                click.echo(f"    {case:<12} {' '.join(topologies)}")


@cli.command("show-config")
@_case_option()
@vendor_option
@topology_option
@config_option
@set_option
def show_config(case: str, vendor: str, topology: str, config_files: tuple[Path, ...],
                overrides: tuple[str, ...]) -> None:
    """Print the resolved config, each key with the file or flag it came from."""
    click.echo(render_with_sources(resolve(case, vendor, topology, overrides, config_files)))


def _run_one(case: str, vendor: str, topology: str, overrides: list[str], *, data_root: Path | None,
             synthetic: bool, started_at: float, config_files: tuple[Path, ...] = (),
             extra_tags: dict[str, str] | None = None) -> Any:
    resolved = resolve(case, vendor, topology, overrides, config_files)
    # Variables such as OMP_NUM_THREADS or XACC_* are read when the device stack initialises, so they must be in
    # the environment before torch is imported (the runner adds the precision's own and scopes both to the run).
    scope = contextlib.nullcontext() if "torch" in sys.modules else scoped_env(resolved.config.accelerator.env)
    with scope:
        from suite import runner  # imports torch

        return runner.run(resolved, data_root=data_root, synthetic=synthetic, started_at=started_at,
                          extra_tags=extra_tags)


def _print_table(outcomes: list) -> None:
    from suite.report import outcome_row, render_table

    click.echo(render_table([outcome_row(o) for o in outcomes]))
    for outcome in outcomes:
        if outcome.pending_sync is not None:
            click.echo(f"accelbench: the tracking server was unreachable; run kept in {outcome.pending_sync}: "
                       f"upload it with `accelbench sync {outcome.pending_sync}`", err=True)


@cli.command("run")
@_case_option()
@vendor_option
@topology_option
@click.option("--data-root", default="", help="COCO2017-layout dataset root (train2017/, val2017/, annotations/).")
@click.option("--synthetic", is_flag=True, help="Use a generated synthetic COCO-format dataset (cached).")
@click.option("--mode", default="", type=click.Choice(["", "convergence", "throughput", "smoke"]),
              help="Override train.mode (default: the topology config's).")
@click.option("--precision", default="", type=click.Choice(["", *PRECISIONS]),
              help="Override train.precision (default: the vendor's).")
@click.option("--experiment", default="", help="MLflow experiment name (default: tracking.experiment).")
@click.option("--node-rank", default=0, show_default=True, type=click.IntRange(min=0),
              help="This node's index in a multi-node topology (run the same command on every node).")
@click.option("--master-addr", default="", help="Address of node 0 for multi-process jobs (dist.master_addr).")
@click.option("--master-port", default=0, type=click.IntRange(min=0, max=65535),
              help="Free port on node 0 for the rendezvous (dist.master_port).")
@config_option
@set_option
@click.option("--overrides", "override_string", default="", metavar="'K=V K=V'",
              help="Space-separated overrides in one string (for MLproject parameters).")
@click.option("--round", "round_index", default=0, hidden=True, type=click.IntRange(min=0))
@click.option("--parent-run-id", default="", hidden=True)
def run_command(case: str, vendor: str, topology: str, data_root: str, synthetic: bool, mode: str,
                precision: str, experiment: str, node_rank: int, master_addr: str, master_port: int,
                config_files: tuple[Path, ...], overrides: tuple[str, ...], override_string: str,
                round_index: int, parent_run_id: str) -> None:
    """Run one benchmark and record it as one MLflow run.

    World size 1 runs in this process; larger topologies start torchrun (one `accelbench run --node-rank i` per
    node for NxM with N > 1), and global rank 0 records the run.
    """
    started_at = _process_start()
    parse_topology(topology)
    settings = [f"train.mode={mode}"] if mode else []
    settings += [f"train.precision={precision}"] if precision else []
    settings += [f"tracking.experiment={experiment}"] if experiment else []
    settings += [f"dist.master_addr={master_addr}"] if master_addr else []
    settings += [f"dist.master_port={master_port}"] if master_port else []
    settings += list(overrides) + shlex.split(override_string)
    if data_root and synthetic:
        raise click.UsageError("--data-root and --synthetic exclude each other")
    resolved = resolve(case, vendor, topology, settings, config_files)
    if node_rank >= resolved.config.nnodes:
        raise click.BadParameter(f"{node_rank} is not a node of topology {topology}", param_hint="--node-rank")
    root = Path(data_root) if data_root else None
    # A matrix member: its round, and the matrix's parent run (MLflow's standard parent tag).
    extra_tags = {names.TAG_ROUND: str(round_index)}
    if parent_run_id:
        extra_tags[names.TAG_PARENT_RUN] = parent_run_id
    if resolved.config.world_size == 1:
        outcome = _run_one(case, vendor, topology, settings, data_root=root, synthetic=synthetic,
                           started_at=started_at, config_files=config_files, extra_tags=extra_tags)
        _print_table([outcome])
        return
    _name_launcher(node_rank)
    code = _launch(resolved, settings, config_files, root, synthetic, node_rank, started_at, extra_tags)
    if code != 0:
        raise click.exceptions.Exit(code)


def _launch(resolved: Any, settings: list[str], config_files: tuple[Path, ...], data_root: Path | None,
            synthetic: bool, node_rank: int, started_at: float, extra_tags: dict[str, str]) -> int:
    from suite import launcher, runner

    config = resolved.config
    prepared = runner.prepare(resolved, data_root=data_root, synthetic=synthetic)  # every check, before any run
    spec = launcher.WorkerSpec(case=config.case, vendor=config.vendor, topology=config.topology,
                               overrides=settings, config_files=[str(f.resolve()) for f in config_files],
                               data_root=None if synthetic else str(prepared.data_root), synthetic=synthetic,
                               started_at=started_at, run_dir=launcher.default_run_dir(), node_rank=node_rank,
                               extra_tags=extra_tags)
    visible_devices_var = prepared.adapter.visible_devices_var
    run_env = prepared.env
    tags = {**runner.run_tags(prepared), **extra_tags}
    description = runner.describe(prepared)
    del prepared  # the launcher waits for the whole job: don't hold the indexed datasets meanwhile
    result = launcher.launch(config, spec, visible_devices_var=visible_devices_var, run_env=run_env,
                             run_tags=tags, description=description)
    if result.run_id is not None:
        from suite.report import mlflow_run_row, render_table

        click.echo(render_table([mlflow_run_row(resolved, result.run_id)]))
    return result.returncode


@cli.command("worker", hidden=True)
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def worker_command(spec_file: Path) -> None:
    """One rank of a multi-process job (started by torchrun; not for direct use)."""
    from suite.worker import run_worker

    run_worker(spec_file)


@cli.command("smoke")
@click.option("--cases", default=",".join(SMOKE_CASES), show_default=True, help="Comma-separated case names.")
@click.option("--vendor", default="cpu", show_default=True)
@set_option
def smoke_command(cases: str, vendor: str, overrides: tuple[str, ...]) -> None:
    """The smoke benchmark: each case on synthetic data in smoke mode, one MLflow run each, then a table."""
    case_names = _names_option_values(cases)
    settings = ["train.mode=smoke", *overrides]
    for case in case_names:  # unknown names and bad flags stop everything before the first run starts
        resolve(case, vendor, "1x1", settings)
    outcomes = []
    failed: list[str] = []
    bad_input: list[BenchError] = []
    started_at = _process_start()
    for index, case in enumerate(case_names):
        if index:
            started_at = time.time()  # later runs in this process start their clock when they begin
        try:
            outcomes.append(_run_one(case, vendor, "1x1", settings, data_root=None, synthetic=True,
                                     started_at=started_at))
        except BenchError as e:  # found before this case's run existed: nothing recorded for it
            bad_input.append(e)
        except Exception as e:  # the run is already recorded as FAILED; go on with the next case
            failed.append(f"{case}: {one_line(e)}")
    if outcomes:
        _print_table(outcomes)  # what ran, whatever happened to the other cases
    if bad_input:
        error = bad_input[0] if len(bad_input) == 1 else BenchError("; ".join(str(e) for e in bad_input))
        if failed:
            error = BenchError(f"{error}; and smoke runs failed: {'; '.join(failed)}")
        raise error
    if failed:
        raise RunError("smoke runs failed: " + "; ".join(failed))


@cli.command("matrix")
@vendor_option
@click.option("--cases", default=",".join(SMOKE_CASES), show_default=True, help="Comma-separated case names.")
@click.option("--topologies", default="1x1", show_default=True, help="Comma-separated topologies, e.g. 1x1,1x8.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(min=1), help="Rounds per member.")
@click.option("--data-root", default="", help="COCO2017-layout dataset root.")
@click.option("--synthetic", is_flag=True, help="Use a generated synthetic COCO-format dataset.")
@click.option("--mode", default="", type=click.Choice(["", "convergence", "throughput", "smoke"]))
@click.option("--experiment", default="accelbench", show_default=True, help="MLflow experiment of the runs.")
@click.option("--strict", is_flag=True, help="Fail instead of skipping topologies this machine cannot run.")
@config_option
@set_option
@click.option("--overrides", "override_string", default="", metavar="'K=V K=V'",
              help="Space-separated overrides in one string (for MLproject parameters).")
def matrix_command(vendor: str, cases: str, topologies: str, repeat: int, data_root: str, synthetic: bool,
                   mode: str, experiment: str, strict: bool, config_files: tuple[Path, ...],
                   overrides: tuple[str, ...], override_string: str) -> None:
    """Run cases x topologies x rounds for one vendor, one MLflow run each, under one parent run."""
    case_names = _names_option_values(cases)
    topology_names = _names_option_values(topologies)
    if data_root and synthetic:
        raise click.UsageError("--data-root and --synthetic exclude each other")
    settings = [*overrides, *shlex.split(override_string), f"tracking.experiment={experiment}"]
    # every member's config must resolve before anything starts
    resolved = [resolve(case, vendor, topology, settings, config_files)
                for case in case_names for topology in topology_names]
    run_args = ["--synthetic"] if synthetic else (["--data-root", data_root] if data_root else [])
    run_args += ["--mode", mode] if mode else []
    for path in config_files:
        run_args += ["--config", str(path.resolve())]
    for setting in settings:
        run_args += ["--set", setting]
    from suite.matrix import run_matrix
    from suite.report import render_table

    result = run_matrix(vendor=vendor, adapter_name=resolved[0].config.accelerator.adapter, cases=case_names,
                        topologies=topology_names, repeat=repeat, run_args=run_args, experiment=experiment,
                        strict=strict)
    rows = [{"case": m.case, "topology": m.topology, "round": str(m.round), "status": m.status,
             "run_id": m.run_id or "", "reason": m.reason} for m in result.members]
    click.echo(render_table(rows, ("case", "topology", "round", "status", "run_id", "reason")))
    for reason in result.skipped:
        click.echo(f"skipped: {reason}")
    for key, value in sorted(result.scaling.items()):
        click.echo(f"{key}: {value:.3f}")
    click.echo(f"parent run: {result.parent_run_id}")
    if result.failed:
        raise RunError(f"{len(result.failed)} of {len(result.members)} matrix members did not finish: "
                       + "; ".join(f"{m.case} {m.topology} round {m.round} ({m.status})" for m in result.failed))


def _check_names(kind: str, given: list[str], valid: list[str]) -> None:
    from suite.errors import UnknownNameError

    for name in given:
        if name not in valid:
            raise UnknownNameError(kind, name, valid)


@cli.command("import-published")
@click.option("--vendors", default="", help="Comma-separated vendors to import (default: every vendor with a "
              "published.yaml).")
@click.option("--experiment", default="accelbench", show_default=True, help="MLflow experiment of the runs.")
def import_published_command(vendors: str, experiment: str) -> None:
    """Record the published results pages as runs tagged bench.source=published (idempotent)."""
    from suite.published import import_published, load_published, published_vendors

    chosen = _names_option_values(vendors) or None
    if chosen:
        _check_names("vendor with published results", chosen, published_vendors())
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
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, names.TAG_KIND, kind)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)


@cli.command("compare")
@click.option("--case", "cases", multiple=True, help="Case(s) to compare, comma-separated or repeated "
              "(default: every case with runs).")
@click.option("--vendors", default="", help="Comma-separated vendors (default: all).")
@click.option("--baseline", default="nvidia_a100", show_default=True, help="Vendor the ratios are relative to.")
@click.option("--source", type=click.Choice(["all", "measured", "published"]), default="all", show_default=True)
@click.option("--experiment", default="accelbench", show_default=True,
              help="MLflow experiment searched, and where the comparison run is recorded.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("comparison"),
              show_default=True, help="Folder for comparison.md/.csv/.html and the charts.")
@click.option("--no-record", is_flag=True, help="Do not record a comparison run in MLflow.")
def compare_command(cases: tuple[str, ...], vendors: str, baseline: str, source: str, experiment: str, out: Path,
                    no_record: bool) -> None:
    """Published-page tables per case: measured and published rows side by side, ratios, scaling, charts."""
    from suite.compare_report import record_comparison_run, terminal_report, write_report
    from suite.errors import DataError
    from suite.results import compare, runs

    case_names = _names_option_values(cases) or None
    vendor_names = _names_option_values(vendors) or None
    _check_names("case", case_names or [], sorted(registry.cases()))
    _check_names("vendor", [*(vendor_names or []), baseline], registry.vendors())
    frame = runs(case=case_names, vendor=vendor_names, source=None if source == "all" else source,
                 experiments=[experiment])
    if frame.empty:
        wanted = ", ".join(f"{k}={','.join(v)}" for k, v in (("case", case_names), ("vendors", vendor_names),
                                                             ("source", [source] if source != "all" else None))
                           if v)
        raise DataError(f"no finished runs match {wanted or 'anything'} in experiment {experiment!r}; run "
                        f"`accelbench import-published` or a benchmark first")
    comparison = compare(runs_frame=frame, baseline=baseline)
    click.echo(terminal_report(comparison), nl=False)
    report = write_report(comparison, out)
    click.echo(f"wrote {', '.join(p.name for p in report.files)} to {out}")
    if not no_record:
        run_id = record_comparison_run(comparison, report, experiment)
        click.echo(f"comparison run: {run_id}")


@cli.command("check")
@click.argument("run_id")
@click.option("--against", "baseline", required=True, metavar="RUN_ID|VENDOR/CASE/NxM",
              help="Baseline: a run id, or vendor/case/topology (newest measured run, else the published row).")
@click.option("--threshold", default=0.05, show_default=True, type=click.FloatRange(min=0),
              help="Smallest relative noise threshold; the baseline repeats' spread widens it.")
def check_command(run_id: str, baseline: str, threshold: float) -> None:
    """Regression gate: compare a run with a baseline; exit 1 if any metric is worse by more than the noise."""
    import mlflow

    from suite.regression import gate
    from suite.report import render_table

    result = gate(mlflow.MlflowClient(), run_id, baseline, threshold)
    click.echo(f"candidate {result.candidate_id} against {result.baseline_source} baseline "
               f"{', '.join(result.baseline_ids)} ({len(result.baseline_ids)} run(s))")
    rows = [{"metric": c.metric, "baseline": f"{c.baseline:.4g}", "candidate": f"{c.candidate:.4g}",
             "change": f"{100 * c.change:+.1f}%", "threshold": f"{100 * c.threshold:.1f}%",
             "threshold_from": c.threshold_from,
             "verdict": "REGRESSION" if c.regression else ("better" if c.change > c.threshold else "ok")}
            for c in result.checks]
    click.echo(render_table(rows, ("metric", "baseline", "candidate", "change", "threshold", "threshold_from",
                                   "verdict")))
    if result.regressions:
        raise RunError(f"{len(result.regressions)} regression(s): "
                       + ", ".join(f"{c.metric} {100 * c.change:+.1f}%" for c in result.regressions))


@cli.command("check-log")
@click.argument("path", type=click.Path(path_type=Path))
def check_log_command(path: Path) -> None:
    """Apply the MLPerf-style event-log rules to an events.jsonl; exit 1 if it is not compliant."""
    from suite.compliance import check_log
    from suite.errors import DataError

    if not path.is_file():
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
    from suite.spool import InProgressError, pending, spool_root, sync

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


@cli.command("doctor")
@vendor_option
@_case_option(default=SMOKE_CASES[0])
@topology_option
@click.option("--data-root", default="", help="COCO2017-layout dataset root to validate as a run would.")
@click.option("--precision", default="", type=click.Choice(["", *PRECISIONS]),
              help="Check this precision (default: the vendor's).")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor_command(vendor: str, case: str, topology: str, data_root: str, precision: str,
                   overrides: tuple[str, ...], as_json: bool) -> None:
    """Check in seconds that this machine can run the vendor's benchmarks; exit 1 if any check fails.

    Python and torch builds, the vendor's stack and devices, the precision's math, the distributed backend, one
    training step of the case's model, memory statistics, telemetry, data, weights, tracking store, spool and MFU
    peak. Creates no MLflow run.
    """
    import json

    from suite.doctor import diagnose

    settings = [*([f"train.precision={precision}"] if precision else []), *overrides]
    report = diagnose(resolve(case, vendor, topology, settings), Path(data_root) if data_root else None)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.text())
    if report.failed:
        raise click.exceptions.Exit(1)


@cli.command("ui")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(min=0, max=65535),
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server worker processes.")
def ui_command(port: int, workers: int) -> None:
    """Serve the MLflow UI on 127.0.0.1 for the store the runs went to (MLFLOW_TRACKING_URI, else ./mlflow.db)."""
    from suite.ui import serve

    code = serve(port, workers, click.echo, server_log=logging.getLogger("suite").isEnabledFor(logging.DEBUG))
    if code:
        raise RunError(f"the MLflow server exited with code {code}")


@cli.command("make-data")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--train", "train_count", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--val", "val_count", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default="128x128", show_default=True, help="Image size WxH.")
@click.option("--seed", default=0, show_default=True)
def make_data(out: Path, train_count: int, val_count: int, size: str, seed: int) -> None:
    """Write a synthetic COCO2017-layout dataset of coloured shapes."""
    from cases.detection.synthetic import SyntheticSpec, write_dataset

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WxH such as 640x480, got {size!r}", param_hint="--size") from None
    if min(width, height) < 32:
        raise click.BadParameter("images must be at least 32x32", param_hint="--size")
    write_dataset(out, SyntheticSpec(train_count, val_count, width, height, seed))
    click.echo(f"wrote {train_count} train and {val_count} val images ({width}x{height}) to {out}")


def _process_start() -> float:
    from suite.timing import process_start_time

    return process_start_time()


def main() -> None:
    from suite.signals import describe, exit_code, stop_signals_raise

    stop_signals_raise()  # a SIGTERM ends a run as KILLED, with what it measured, instead of leaving it RUNNING
    _configure_logging(_inherited_level())  # -v/-q, wherever they appear, adjust it while the line is parsed
    try:
        code = cli.main(prog_name="accelbench", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort as e:
        # click turns KeyboardInterrupt (Ctrl-C, or SIGTERM/SIGHUP through suite.signals) into Abort
        stop = e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else KeyboardInterrupt()
        click.echo(f"accelbench: {describe(stop)}", err=True)
        sys.exit(exit_code(stop))
    except BenchError as e:
        click.echo(f"accelbench: error: {redact_text(str(e))}", err=True)
        sys.exit(e.exit_code)
    except RunError as e:
        click.echo(f"accelbench: run failed: {redact_text(str(e))}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        click.echo(f"accelbench: {describe(e)}", err=True)
        sys.exit(exit_code(e))
    sys.exit(code if isinstance(code, int) else 0)
