"""The `accelbench` group and what every command shares: logging and -v/-q, common options, tables on stdout."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click

from suite import names
from suite.errors import BenchError, UnknownNameError
from suite.redaction import RedactingFormatter

LOG_LEVEL_ENV = "ACCELBENCH_LOG_LEVEL"  # inherited by matrix members and torchrun workers
SMOKE_CASES = ("faster_rcnn", "retinanet", "mask_rcnn")


def console() -> logging.Handler:
    """The root logger's progress-aware stderr handler, added on first use."""
    from suite.progress import ConsoleHandler

    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, ConsoleHandler)), None)
    if handler is None:
        handler = ConsoleHandler()  # follows sys.stderr
        root.addHandler(handler)
    return handler


def name_launcher(node_rank: int) -> None:
    """A multi-process job's `accelbench run` on each node is that node's launcher, not a rank: say so."""
    console().setFormatter(RedactingFormatter(names.log_format(None, node_rank)))


LEVELLED_LOGGERS = ("", "suite", "cases")  # the root logger and our packages': at the chosen level
CONFIGURED_LOGGERS = (*LEVELLED_LOGGERS, "urllib3")  # every logger configure_logging sets a level on


def configure_logging(level: int) -> None:
    """Console logging at `level` through the progress-aware handler; lines name their node and rank."""
    verbose = level <= logging.DEBUG
    # torchrun sets RANK and GROUP_RANK (the node) in each worker.
    where = names.log_format(os.environ.get("RANK", "0"), os.environ.get("GROUP_RANK", "0"))
    console().setFormatter(RedactingFormatter(where))
    for name in LEVELLED_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # urllib3 warns on every retry against an unreachable server; suite.tracking.spool says it once, in our words.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose else logging.ERROR)
    # MLflow's own INFO lines ("Creating initial MLflow database tables...") are noise around our one-line errors
    # and tables; -v brings them back. MLflow reads this when it is imported (after this point), and worker
    # processes inherit it. A user's own MLFLOW_LOGGING_LEVEL wins.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose else "WARNING")
    os.environ[LOG_LEVEL_ENV] = logging.getLevelName(level)


def inherited_level() -> int:
    level = logging.getLevelName(os.environ.get(LOG_LEVEL_ENV, "INFO").upper())
    return level if isinstance(level, int) else logging.INFO


def _verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """-v/--verbose and -q/--quiet, accepted before the subcommand and after it (the later one wins)."""
    if param.name == "verbose" and value:
        configure_logging(logging.DEBUG)
    elif param.name == "quiet" and value:
        configure_logging(logging.WARNING)


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


def case_option(default: str | None = None) -> Any:
    return click.option("--case", required=default is None, default=default, help="Case name (see `list`).")


vendor_option = click.option("--vendor", required=True, help="Vendor config folder (see `list`).")
topology_option = click.option("--topology", default="1x1", show_default=True, help="NxM: nodes x devices.")
config_option = click.option("--config", "config_files", multiple=True, type=click.Path(path_type=Path),
                             metavar="FILE", help="Extra YAML config layer, applied before --set. Repeatable.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a config key (YAML value), e.g. --set hp.bs=4. Repeatable.")
override_string_option = click.option("--overrides", "override_string", default="", metavar="'K=V K=V'",
                                      help="Space-separated overrides in one string (for MLproject parameters).")


def _experiment_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An experiment name MLflow will take (checked before anything runs: MLflow refuses it only at run start)."""
    from suite.config import MAX_EXPERIMENT_NAME_LENGTH

    if len(value) > MAX_EXPERIMENT_NAME_LENGTH:
        raise BenchError(f"--experiment: {len(value)} characters, and MLflow takes at most "
                         f"{MAX_EXPERIMENT_NAME_LENGTH}")
    return value


def experiment_option(default: str, help_text: str) -> Any:
    return click.option("--experiment", default=default, show_default=bool(default), help=help_text,
                        callback=_experiment_name)


def names_option_values(text: tuple[str, ...] | str) -> list[str]:
    """Names from comma-separated option values (`--cases a,b`, or a repeated `--case a --case b`)."""
    items = text if isinstance(text, tuple) else (text,)
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


def check_names(kind: str, given: list[str], valid: list[str]) -> None:
    for name in given:
        if name not in valid:
            raise UnknownNameError(kind, name, valid)


def print_runs(result: Any) -> None:
    """A BenchmarkResult's table, and where any run was kept for `accelbench sync`."""
    from suite.tables import render_table
    from suite.tracking.rows import COLUMNS

    if result.rows:
        click.echo(render_table(result.rows, COLUMNS))
        print_run_links([row["run_id"] for row in result.rows if row.get("run_id")])
    for folder in result.pending_sync:
        click.echo(f"accelbench: the tracking server was unreachable; run kept in {folder}: upload it with "
                   f"`accelbench sync {folder}`", err=True)
    if result.unrecorded:
        from suite.errors import RecordLostError

        raise RecordLostError("; ".join(result.unrecorded) + ": the table above is the only complete copy of its "
                              "figures")


def print_run_links(run_ids: list[str], artifact: str | None = None) -> None:
    """Where each run's page is (its Artifacts tab on `artifact`), when the runs went to a tracking server (a local
    store has no address until `accelbench ui` serves it; it prints the views then)."""
    from suite.launch.ui import tracking_store

    store = tracking_store()
    if not store.remote or not run_ids:
        return
    from suite.tracking.client import client
    from suite.tracking.views import run_path, ui_address

    mlflow_client = client(store.uri)
    for run_id in run_ids:
        try:
            run = mlflow_client.get_run(run_id)
        except Exception:  # noqa: BLE001 - a link is a convenience; the table above holds the figures
            continue
        click.echo(f"run page of {run.info.run_name}: {ui_address(store.uri)}/"
                   f"{run_path(run.info.experiment_id, run_id, artifact)}")


def process_start() -> float:
    from suite.engine.timing import process_start_time

    return process_start_time()
