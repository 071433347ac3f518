"""The `accelbench` command line (also `python -m suite`).

    accelbench list                                     cases, vendors and their topologies (no torch import)
    accelbench show-config --case C --vendor V --topology NxM [--set k=v]   resolved config with sources
    accelbench run --case C --vendor V --topology NxM (--data-root DIR | --synthetic) [--config F] [--set k=v]
    accelbench smoke                                    the synthetic CPU demo of every case, then a table
    accelbench make-data --out DIR --train N --val M --size WxH

Bad input prints one `accelbench: error: ...` line and exits 2 before any run is created; a failure during a run
marks the MLflow run FAILED and exits 1.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

from suite import registry
from suite.config import parse_topology, render_with_sources, resolve
from suite.errors import BenchError, RunError

logger = logging.getLogger("suite")
SMOKE_CASES = ("faster_rcnn", "retinanet", "mask_rcnn")


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s rank0 %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("suite").setLevel(level)
    logging.getLogger("cases").setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="accelbench")
def cli(verbose: int, quiet: bool) -> None:
    """accelbench: accelerator training benchmarks recorded in MLflow."""
    _configure_logging(verbose, quiet)


def _case_option(default: str | None = None) -> click.Option:
    return click.option("--case", required=default is None, default=default, help="Case name (see `list`).")


vendor_option = click.option("--vendor", required=True, help="Vendor config folder (see `list`).")
topology_option = click.option("--topology", default="1x1", show_default=True, help="NxM: nodes x devices.")
config_option = click.option("--config", "config_files", multiple=True, type=click.Path(path_type=Path),
                             metavar="FILE", help="Extra YAML config layer, applied before --set. Repeatable.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a config key (YAML value), e.g. --set hp.bs=4. Repeatable.")


@cli.command("list")
def list_command() -> None:
    """List cases, vendors and the topologies each vendor has configs for."""
    case_names = sorted(registry.cases())
    click.echo("cases:    " + ", ".join(case_names))
    click.echo("adapters: " + ", ".join(sorted(registry.adapters())))
    click.echo("vendors:")
    for vendor in registry.vendors():
        vendor_file = registry.vendor_dir(vendor) / registry.VENDOR_FILE
        settings = (yaml.safe_load(vendor_file.read_text(encoding="utf-8")) or {}).get("accelerator", {})
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
             synthetic: bool, started_at: float, config_files: tuple[Path, ...] = ()) -> Any:
    resolved = resolve(case, vendor, topology, overrides, config_files)
    # Variables such as OMP_NUM_THREADS or XACC_* are read when the device stack initialises, so they must be in
    # the environment before torch is imported; the runner also scopes them to the run.
    if "torch" not in sys.modules:
        os.environ.update(resolved.config.accelerator.env)
    from suite import runner  # imports torch

    return runner.run(resolved, data_root=data_root, synthetic=synthetic, started_at=started_at)


def _print_table(outcomes: list) -> None:
    from suite.report import outcome_row, render_table

    click.echo(render_table([outcome_row(o) for o in outcomes]))


@cli.command("run")
@_case_option()
@vendor_option
@topology_option
@click.option("--data-root", default="", help="COCO2017-layout dataset root (train2017/, val2017/, annotations/).")
@click.option("--synthetic", is_flag=True, help="Use a generated synthetic COCO-format dataset (cached).")
@click.option("--mode", default="", type=click.Choice(["", "convergence", "throughput", "smoke"]),
              help="Override train.mode (default: the topology config's).")
@click.option("--precision", default="", type=click.Choice(["", "fp32", "tf32", "amp_bf16", "amp_fp16"]),
              help="Override train.precision (default: the vendor's).")
@click.option("--experiment", default="", help="MLflow experiment name (default: tracking.experiment).")
@config_option
@set_option
@click.option("--overrides", "override_string", default="", metavar="'K=V K=V'",
              help="Space-separated overrides in one string (for MLproject parameters).")
def run_command(case: str, vendor: str, topology: str, data_root: str, synthetic: bool, mode: str,
                precision: str, experiment: str, config_files: tuple[Path, ...], overrides: tuple[str, ...],
                override_string: str) -> None:
    """Run one benchmark and record it as one MLflow run."""
    started_at = _process_start()
    parse_topology(topology)
    settings = [f"train.mode={mode}"] if mode else []
    settings += [f"train.precision={precision}"] if precision else []
    settings += [f"tracking.experiment={experiment}"] if experiment else []
    settings += list(overrides) + shlex.split(override_string)
    if data_root and synthetic:
        raise click.UsageError("--data-root and --synthetic exclude each other")
    outcome = _run_one(case, vendor, topology, settings, data_root=Path(data_root) if data_root else None,
                       synthetic=synthetic, started_at=started_at, config_files=config_files)
    _print_table([outcome])


@cli.command("smoke")
@click.option("--cases", default=",".join(SMOKE_CASES), show_default=True, help="Comma-separated case names.")
@click.option("--vendor", default="cpu", show_default=True)
@set_option
def smoke_command(cases: str, vendor: str, overrides: tuple[str, ...]) -> None:
    """The smoke benchmark: each case on synthetic data in smoke mode, one MLflow run each, then a table."""
    outcomes = []
    failed = []
    started_at = _process_start()
    for index, case in enumerate(c.strip() for c in cases.split(",") if c.strip()):
        if index:
            started_at = time.time()  # later runs in this process start their clock when they begin
        try:
            outcomes.append(_run_one(case, vendor, "1x1", ["train.mode=smoke", *overrides], data_root=None,
                                     synthetic=True, started_at=started_at))
        except BenchError:
            raise
        except Exception as e:  # the run is already recorded as FAILED; go on with the next case
            failed.append(f"{case}: {type(e).__name__}: {e}")
    if outcomes:
        _print_table(outcomes)
    if failed:
        raise RunError("smoke runs failed: " + "; ".join(failed))


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
    try:
        code = cli.main(prog_name="accelbench", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except BenchError as e:
        click.echo(f"accelbench: error: {e}", err=True)
        sys.exit(e.exit_code)
    except RunError as e:
        click.echo(f"accelbench: run failed: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("accelbench: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
