"""The `accelbench` command line (also `python -m suite`).

    accelbench list                                     cases, vendors and their topologies (no torch import)
    accelbench show-config --case C --vendor V --topology NxM [--set k=v]   resolved config with sources
    accelbench run --case C --vendor V --topology NxM (--data-root DIR | --synthetic) [--config F] [--set k=v]
    accelbench smoke                                    the synthetic CPU demo of every case, then a table
    accelbench matrix --vendor V --cases C,D --topologies 1x1,1x8 [--repeat N]   one parent run, one run each
    accelbench make-data --out DIR --train N --val M --size WxH
    accelbench doctor --vendor V [--case C --topology NxM] [--data-root DIR] [--json]   is this machine ready?
    accelbench import-published                         the published pages' rows as runs (idempotent)
    accelbench compare [--case C] [--vendors V,W] [--baseline V] [--out DIR]   tables, ratios, charts, report run
    accelbench check RUN_ID --against BASELINE [--exact]   regression gate; exit 1 regression, 3 baseline too noisy
    accelbench check-log FILE                           MLPerf-style rules on an events.jsonl; exit 1 if violated
    accelbench sync [DIR ...]                           upload runs recorded while the tracking server was away
    accelbench ui [--port P]                            the MLflow UI on 127.0.0.1 for the store the runs went to
    accelbench submit [--dry-run] [--wait] run|matrix ARGS   the same as SLURM jobs (or a PyTorchJob manifest)

The commands only parse and print; what they run lives in suite.launch and suite.results. Bad input is a BenchError
(one `accelbench: error: ...` line, exit 2, before any run is created); a failure during a run marks the MLflow run
FAILED and is a RunError (exit 1). Both are click exceptions, shown in one place (suite.errors), so the commands can
be driven in-process with click's CliRunner.
"""

from __future__ import annotations

import sys

import click

from suite.cli import benchmarks, cluster, results  # noqa: F401 - their commands register on the group
from suite.cli.base import cli, configure_logging, inherited_level

__all__ = ["cli", "main"]


def main() -> None:
    """The console script: MLflow client defaults, stop signals and logging set up, then the command."""
    from suite.errors import one_line
    from suite.launch.signals import describe, exit_code, stop_signals_raise
    from suite.redaction import redact_console
    from suite.tracking.client import configure

    redact_console()  # whoever prints a tracking URI (MLflow prints "View run ... at: <uri>"), no password shows
    configure()  # before anything imports mlflow: no telemetry, bounded retries and timeout (user's values win)
    stop_signals_raise()  # a SIGTERM ends a run as KILLED, with what it measured, instead of leaving it RUNNING
    configure_logging(inherited_level())  # -v/-q, wherever they appear, adjust it while the line is parsed
    try:
        code = cli.main(prog_name="accelbench", standalone_mode=False)
    except click.ClickException as e:  # BenchError and RunError too: one line, their exit code
        e.show()
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt) as e:
        # click turns KeyboardInterrupt (Ctrl-C, or SIGTERM/SIGHUP through suite.launch.signals) into Abort, and
        # EOFError too (a Ctrl-D at one of its prompts; the suite has none): an EOFError from the code, say a
        # file cut short, is a failure like any other, never "interrupted"
        if isinstance(e.__cause__, EOFError):
            click.echo(f"accelbench: error: {one_line(e.__cause__)}", err=True)
            sys.exit(1)
        stop = e if isinstance(e, KeyboardInterrupt) else (
            e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else KeyboardInterrupt())
        click.echo(f"accelbench: {describe(stop)}", err=True)
        sys.exit(exit_code(stop))
    sys.exit(code if isinstance(code, int) else 0)
