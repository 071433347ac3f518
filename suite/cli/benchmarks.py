"""The commands that run or prepare benchmarks: list, show-config, run, worker, smoke, matrix, make-data, doctor."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from suite import registry
from suite.cli.base import (
    SMOKE_CASES,
    case_option,
    cli,
    config_option,
    experiment_option,
    name_launcher,
    names_option_values,
    override_string_option,
    print_runs,
    process_start,
    set_option,
    topology_option,
    vendor_option,
)
from suite.config import read_yaml_layer, render_with_sources, resolve
from suite.errors import BenchError, RunError
from suite.precision import PRECISIONS
from suite.topology import parse_topology


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
@case_option()
@vendor_option
@topology_option
@config_option
@set_option
def show_config(case: str, vendor: str, topology: str, config_files: tuple[Path, ...],
                overrides: tuple[str, ...]) -> None:
    """Print the resolved config, each key with the file or flag it came from."""
    click.echo(render_with_sources(resolve(case, vendor, topology, overrides, config_files)))


@cli.command("run")
@case_option()
@vendor_option
@topology_option
@click.option("--data-root", default="", help="COCO2017-layout dataset root (train2017/, val2017/, annotations/).")
@click.option("--synthetic", is_flag=True, help="Use a generated synthetic COCO-format dataset (cached).")
@click.option("--mode", default="", type=click.Choice(["", "convergence", "throughput", "smoke"]),
              help="Override train.mode (default: the topology config's).")
@click.option("--precision", default="", type=click.Choice(["", *PRECISIONS]),
              help="Override train.precision (default: the vendor's).")
@experiment_option("", "MLflow experiment name (default: tracking.experiment).")
@click.option("--node-rank", default=None, type=click.IntRange(min=0),
              help="This node's index in a multi-node topology (default: from SLURM or a PyTorchJob, else 0).")
@click.option("--master-addr", default="", help="Address of node 0 for multi-process jobs (dist.master_addr).")
@click.option("--master-port", default=0, type=click.IntRange(min=0, max=65535),
              help="Free port on node 0 for the rendezvous (dist.master_port).")
@config_option
@set_option
@override_string_option
@click.option("--round", "round_index", default=0, hidden=True, type=click.IntRange(min=0))
@click.option("--parent-run-id", default="", hidden=True)
def run_command(case: str, vendor: str, topology: str, data_root: str, synthetic: bool, mode: str,
                precision: str, experiment: str, node_rank: int | None, master_addr: str, master_port: int,
                config_files: tuple[Path, ...], overrides: tuple[str, ...], override_string: str,
                round_index: int, parent_run_id: str) -> None:
    """Run one benchmark and record it as one MLflow run.

    World size 1 runs in this process; larger topologies start torchrun (one `accelbench run --node-rank i` per
    node for NxM with N > 1), and global rank 0 records the run.
    """
    from suite.launch.jobs import member_tags, run_benchmark
    from suite.launch.scheduler import node_settings

    started_at = process_start()
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
    # Inside a SLURM step or a PyTorchJob pod the job says where this node is (suite.launch.scheduler)
    node = node_settings(topology, resolved.config.accelerator.adapter, node_rank=node_rank,
                         master_addr=master_addr, master_port=master_port)
    node_rank = node.node_rank
    if node.settings:
        settings = [*node.settings, *settings]
        resolved = resolve(case, vendor, topology, settings, config_files)
    if node_rank >= resolved.config.nnodes:
        raise click.BadParameter(f"{node_rank} is not a node of topology {topology}", param_hint="--node-rank")
    if resolved.config.world_size > 1:
        name_launcher(node_rank)
    result = run_benchmark(resolved, settings=settings, config_files=config_files,
                           data_root=Path(data_root) if data_root else None, synthetic=synthetic,
                           node_rank=node_rank, started_at=started_at,
                           extra_tags={**node.tags, **member_tags(round_index, parent_run_id)})
    print_runs(result)
    if result.returncode != 0:
        raise click.exceptions.Exit(result.returncode)


@cli.command("worker", hidden=True)
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def worker_command(spec_file: Path) -> None:
    """One rank of a multi-process job (started by torchrun; not for direct use)."""
    from suite.launch.worker import run_worker

    run_worker(spec_file)


SMOKE_NEXT = """
mAP is 0 here by design: a smoke run trains a randomly initialised model for a few steps on generated shapes, which
checks the pipeline, the timers and the recording, not accuracy (a convergence run on COCO measures mAP).
Next:
  accelbench ui         the MLflow UI on these runs (http://127.0.0.1:5000)
  accelbench compare    these runs beside the published results pages (run `accelbench import-published` first)"""


@cli.command("smoke")
@click.option("--cases", default=",".join(SMOKE_CASES), show_default=True, help="Comma-separated case names.")
@click.option("--vendor", default="cpu", show_default=True)
@set_option
def smoke_command(cases: str, vendor: str, overrides: tuple[str, ...]) -> None:
    """The smoke benchmark: each case on synthetic data in smoke mode, one MLflow run each, then a table."""
    from suite.launch.jobs import smoke

    result = smoke(names_option_values(cases), vendor, list(overrides), process_start())
    print_runs(result.table)  # what ran, whatever happened to the other cases
    if result.outcomes:
        click.echo(SMOKE_NEXT)
    if result.bad_input:
        bad = result.bad_input
        error = bad[0] if len(bad) == 1 else BenchError("; ".join(str(e) for e in bad))
        if result.failed:
            error = BenchError(f"{error}; and smoke runs failed: {'; '.join(result.failed)}")
        raise error
    if result.failed:
        raise RunError("smoke runs failed: " + "; ".join(result.failed))


@cli.command("matrix")
@vendor_option
@click.option("--cases", default=",".join(SMOKE_CASES), show_default=True, help="Comma-separated case names.")
@click.option("--topologies", default="1x1", show_default=True, help="Comma-separated topologies, e.g. 1x1,1x8.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(min=1), help="Rounds per member.")
@click.option("--data-root", default="", help="COCO2017-layout dataset root.")
@click.option("--synthetic", is_flag=True, help="Use a generated synthetic COCO-format dataset.")
@click.option("--mode", default="", type=click.Choice(["", "convergence", "throughput", "smoke"]))
@experiment_option("accelbench", "MLflow experiment of the runs.")
@click.option("--strict", is_flag=True, help="Fail instead of skipping topologies this machine cannot run.")
@config_option
@set_option
@override_string_option
def matrix_command(vendor: str, cases: str, topologies: str, repeat: int, data_root: str, synthetic: bool,
                   mode: str, experiment: str, strict: bool, config_files: tuple[Path, ...],
                   overrides: tuple[str, ...], override_string: str) -> None:
    """Run cases x topologies x rounds for one vendor, one MLflow run each, under one parent run."""
    from suite.launch.jobs import member_arguments
    from suite.launch.matrix import run_matrix
    from suite.launch.scheduler import detect
    from suite.tables import render_table

    case_names = names_option_values(cases)
    topology_names = names_option_values(topologies)
    if data_root and synthetic:
        raise click.UsageError("--data-root and --synthetic exclude each other")
    placement = detect()
    if placement is not None and placement.nnodes > 1:
        raise BenchError(f"matrix inside a {placement.nnodes}-node {placement.scheduler} job ({placement.where}): "
                         f"every node would run the whole matrix; `accelbench submit matrix` gives each member a job "
                         f"of its own size")
    settings = [*overrides, *shlex.split(override_string), f"tracking.experiment={experiment}"]
    # every member's config must resolve before anything starts
    resolved = [resolve(case, vendor, topology, settings, config_files)
                for case in case_names for topology in topology_names]
    run_args = member_arguments(data_root=data_root, synthetic=synthetic, mode=mode, config_files=config_files,
                                settings=settings)
    result = run_matrix(vendor=vendor, adapter_name=resolved[0].config.accelerator.adapter, cases=case_names,
                        topologies=topology_names, repeat=repeat, run_args=run_args, experiment=experiment,
                        strict=strict)
    rows = [{"case": m.case, "topology": m.topology, "round": str(m.round), "status": m.status,
             "run_id": m.run_id or "", "reason": m.reason} for m in result.members]
    click.echo(render_table(rows, ("case", "topology", "round", "status", "run_id", "reason")))
    for reason in result.skipped:
        click.echo(f"skipped: {reason}")
    for key, value in sorted(result.scaling.items()):
        flags = result.implausible.get(key)
        click.echo(f"{key}: {value:.3f}" + (f"  IMPLAUSIBLE: {'; '.join(flags)}" if flags else ""))
    click.echo(f"parent run: {result.parent_run_id}")
    if result.failed:
        raise RunError(f"{len(result.failed)} of {len(result.members)} matrix members did not finish: "
                       + "; ".join(f"{m.case} {m.topology} round {m.round} ({m.status})" for m in result.failed))


@cli.command("make-data")
@case_option(default=SMOKE_CASES[0])
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--train", "train_count", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--val", "val_count", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--size", default="128x128", show_default=True, help="Image size WxH.")
@click.option("--seed", default=0, show_default=True)
def make_data(case: str, out: Path, train_count: int, val_count: int, size: str, seed: int) -> None:
    """Write the case's synthetic dataset (for the detection cases: COCO2017-layout coloured shapes)."""
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WxH such as 640x480, got {size!r}", param_hint="--size") from None
    if min(width, height) < 32:
        raise click.BadParameter("images must be at least 32x32", param_hint="--size")
    registry.case_class(case).write_synthetic(out, train=train_count, val=val_count, width=width, height=height,
                                              seed=seed)
    click.echo(f"wrote {train_count} train and {val_count} val images ({width}x{height}) to {out}")


@cli.command("doctor")
@vendor_option
@case_option(default=SMOKE_CASES[0])
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

    from suite.launch.doctor import diagnose

    settings = [*([f"train.precision={precision}"] if precision else []), *overrides]
    report = diagnose(case, vendor, topology, settings, Path(data_root) if data_root else None)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.text())
    if report.failed:
        raise click.exceptions.Exit(1)
