"""`accelbench submit run|matrix ...`: the same arguments as `run` and `matrix`, as jobs of the cluster's scheduler
(suite.launch.submit); `accelbench matrix-finish` (hidden): the last job of a submitted matrix."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from suite.cli.base import cli, names_option_values
from suite.errors import BenchError


@dataclass(frozen=True)
class SubmitOptions:
    scheduler: str
    dry_run: bool
    wait: bool
    log_dir: Path
    cluster: dict[str, Any]  # flags given, over the config's `cluster:` section


def _cluster_settings(resolved: Any, options: SubmitOptions) -> Any:
    from pydantic import ValidationError

    from suite.config import ClusterSettings

    merged = {**resolved.config.cluster.model_dump(), **options.cluster}
    try:
        return ClusterSettings.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise BenchError(f"cluster.{key} = {first.get('input')!r}: {first['msg']}") from None


@cli.group("submit", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--scheduler", type=click.Choice(["slurm", "kubernetes"]), default="slurm", show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the sbatch script (or PyTorchJob manifest); submit nothing.")
@click.option("--wait", is_flag=True, help="Follow the job(s) to the end; exit with the run's status.")
@click.option("--partition", default=None)
@click.option("--account", default=None)
@click.option("--qos", default=None)
@click.option("--constraint", default=None)
@click.option("--reservation", default=None)
@click.option("--time", "time_limit", default=None, help="Time limit, e.g. 2:00:00.")
@click.option("--cpus-per-task", default=None, type=click.IntRange(min=1))
@click.option("--signal", "warning", default=None, metavar="USR1@SECONDS",
              help="Warning signal before the time limit (default USR1@120): the run stops at a step boundary.")
@click.option("--sbatch", "sbatch_lines", multiple=True, metavar="OPTION", help="Another #SBATCH line. Repeatable.")
@click.option("--image", default=None, help="Kubernetes: the container image.")
@click.option("--namespace", default=None, help="Kubernetes: the PyTorchJob's namespace.")
@click.option("--log-dir", default="accelbench-jobs", show_default=True, type=click.Path(path_type=Path),
              help="Where scripts and job logs go (a folder every node sees).")
@click.pass_context
def submit_group(ctx: click.Context, scheduler: str, dry_run: bool, wait: bool, partition: str | None,
                 account: str | None, qos: str | None, constraint: str | None, reservation: str | None,
                 time_limit: str | None, cpus_per_task: int | None, warning: str | None,
                 sbatch_lines: tuple[str, ...], image: str | None, namespace: str | None, log_dir: Path) -> None:
    """Submit `run` or `matrix` (same arguments) as scheduler jobs: SLURM's sbatch, or a Kubernetes PyTorchJob."""
    given = {"partition": partition, "account": account, "qos": qos, "constraint": constraint,
             "reservation": reservation, "time": time_limit, "cpus_per_task": cpus_per_task, "warning": warning,
             "image": image, "namespace": namespace}
    cluster = {k: v for k, v in given.items() if v is not None}
    if sbatch_lines:
        cluster["sbatch"] = list(sbatch_lines)
    if dry_run and wait:
        raise click.UsageError("--dry-run and --wait exclude each other")
    ctx.obj = SubmitOptions(scheduler, dry_run, wait, log_dir.resolve(), cluster)


PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _parse(command: click.Command, name: str, args: list[str]) -> dict[str, Any]:
    """`args` parsed as `accelbench <name>` parses them (same checks, same one-line errors), without running."""
    with command.make_context(f"accelbench {name}", list(args)) as context:
        return dict(context.params)


def _settings(params: dict[str, Any]) -> list[str]:
    settings = [*params.get("overrides", ()), *shlex.split(params.get("override_string", ""))]
    if params.get("mode"):
        settings.append(f"train.mode={params['mode']}")
    return settings


@submit_group.command("run", context_settings=PASS_THROUGH)
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def submit_run(options: SubmitOptions, run_args: tuple[str, ...]) -> None:
    """`accelbench run ARGS` as one job: N nodes, one task each, for topology NxM."""
    from suite.cli.benchmarks import run_command
    from suite.config import resolve
    from suite.launch import submit

    params = _parse(run_command, "run", list(run_args))
    resolved = resolve(params["case"], params["vendor"], params["topology"], _settings(params),
                       params["config_files"])
    nodes, per_node = submit.check_topology(params["topology"])
    job = _job(resolved, options, ["run", *run_args], nodes, per_node,
               submit.job_name("run", params["case"], params["vendor"], params["topology"]))
    ids = _submit([job], options)
    if options.wait and ids:
        _follow_runs(ids)


@submit_group.command("matrix", context_settings=PASS_THROUGH)
@click.argument("matrix_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def submit_matrix(options: SubmitOptions, matrix_args: tuple[str, ...]) -> None:
    """`accelbench matrix ARGS` as one job per member under one parent run, and a last job completing the parent."""
    from suite.cli.benchmarks import matrix_command
    from suite.config import resolve
    from suite.launch import submit
    from suite.launch.jobs import member_arguments
    from suite.launch.matrix import start_parent

    if options.scheduler != "slurm":
        raise BenchError("submit matrix: SLURM only (a PyTorchJob is one run: `submit --scheduler kubernetes run`)")
    params = _parse(matrix_command, "matrix", list(matrix_args))
    vendor, experiment = params["vendor"], params["experiment"]
    cases, topologies = names_option_values(params["cases"]), names_option_values(params["topologies"])
    settings = [*_settings({**params, "mode": ""}), f"tracking.experiment={experiment}"]
    resolved = {(c, t): resolve(c, vendor, t, settings, params["config_files"]) for c in cases for t in topologies}
    run_args = member_arguments(data_root=params["data_root"], synthetic=params["synthetic"], mode=params["mode"],
                                config_files=params["config_files"], settings=settings)
    jobs = []
    for (case, topology), config in resolved.items():
        nodes, per_node = submit.check_topology(topology)
        for round_index in range(params["repeat"]):
            command = ["run", "--case", case, "--vendor", vendor, "--topology", topology, "--round",
                       str(round_index), "--parent-run-id", "{parent}", *run_args]
            jobs.append(_job(config, options, command, nodes, per_node,
                             submit.job_name(f"matrix-r{round_index}", case, vendor, topology)))
    if options.dry_run:
        _submit(jobs, options)
        return
    parent = start_parent(vendor=vendor, cases=cases, topologies=topologies, repeat=params["repeat"],
                          experiment=experiment, extra_tags={"bench.scheduler": "slurm"})
    jobs = [_with_parent(job, parent.run_id) for job in jobs]
    member_ids = _submit(jobs, options)
    finisher = submit.JobSpec(name=submit.job_name("matrix-finish", "all", vendor, "1x1"),
                              command=["matrix-finish", "--parent-run-id", parent.run_id], nodes=1, per_node=1,
                              gres=None, k8s_resource=None, cluster=jobs[0].cluster, cpus_per_task=1,
                              env=jobs[0].env, dependency="afterany:" + ":".join(member_ids))
    click.echo(f"parent run: {parent.run_id} (completed by the last job, after every member)")
    (finisher_id,) = _submit([finisher], options)
    parent.set_tags({"slurm.member_jobs": ",".join(member_ids), "slurm.finish_job": finisher_id})
    if options.wait:
        from suite.launch.submit import finished_state, wait_for
        from suite.tracking.client import client

        states = wait_for([*member_ids, finisher_id], click.echo)
        ended = client().get_run(parent.run_id).info.status  # FAILED when a member did not finish
        click.echo(f"parent run {parent.run_id}: {ended}")
        raise click.exceptions.Exit(0 if ended == "FINISHED" and finished_state(states) == 0 else 1)


def _with_parent(job: Any, parent_run_id: str) -> Any:
    from dataclasses import replace

    return replace(job, command=[parent_run_id if word == "{parent}" else word for word in job.command])


def _job(resolved: Any, options: SubmitOptions, command: list[str], nodes: int, per_node: int, name: str) -> Any:
    from suite.launch import submit

    cluster = _cluster_settings(resolved, options)
    accelerator = resolved.config.accelerator
    return submit.JobSpec(name=name, command=command, nodes=nodes, per_node=per_node, gres=accelerator.slurm_gres,
                          k8s_resource=accelerator.k8s_resource, cluster=cluster,
                          cpus_per_task=submit.cpus_per_task(per_node, resolved.config.data.workers, cluster),
                          env=submit.tracking_env())


def _submit(jobs: list[Any], options: SubmitOptions) -> list[str]:
    """Print (`--dry-run`) or submit each job; returns the job ids (none for a dry run)."""
    from suite.launch import submit

    if options.scheduler == "kubernetes":
        (job,) = jobs
        if not job.cluster.image:
            raise BenchError("--image: a PyTorchJob needs the container image its pods run (--image or "
                             "cluster.image)")
        manifest = submit.pytorchjob_manifest(job, image=job.cluster.image, namespace=job.cluster.namespace)
        if not options.dry_run:
            raise BenchError("submit --scheduler kubernetes: apply the manifest --dry-run prints with `kubectl apply "
                             "-f -` (accelbench does not talk to a Kubernetes API itself)")
        click.echo(yaml.safe_dump(manifest, sort_keys=False), nl=False)
        return []
    ids = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for index, job in enumerate(jobs):
        script_path = options.log_dir / f"{job.name}-{stamp}-{index}.sbatch"
        script = submit.sbatch_script(job, log_dir=options.log_dir, workdir=Path.cwd(), script_path=script_path)
        if options.dry_run:
            click.echo(script)
            continue
        job_id = submit.submit_script(script, script_path)
        log = options.log_dir / f"{job.name}-{job_id}.log"
        click.echo(f"submitted job {job_id}: log {log}, script {script_path}")
        ids.append(job_id)
    return ids


def _follow_runs(ids: list[str]) -> None:
    """`--wait`: follow the jobs to their end, print the runs they recorded, and exit 0 only when every job and
    every run ended well."""
    from suite.launch import submit

    states = submit.wait_for(ids, click.echo)
    runs = [run for job_id in ids for run in submit.runs_of_job(job_id)]
    for run in runs:
        said = run.data.tags.get("bench.failure", "")
        click.echo(f"run {run.info.run_id}: {run.info.status}" + (f" ({said})" if said else ""))
    ok = bool(runs) and all(run.info.status == "FINISHED" for run in runs) and submit.finished_state(states) == 0
    raise click.exceptions.Exit(0 if ok else 1)


@cli.command("matrix-finish", hidden=True)
@click.option("--parent-run-id", required=True)
def matrix_finish_command(parent_run_id: str) -> None:
    """The last job of a submitted matrix: the parent's scaling figures from its members, and its end."""
    from suite.launch.matrix import finish_parent

    result = finish_parent(parent_run_id)
    for key, value in sorted(result.scaling.items()):
        click.echo(f"{key}: {value:.3f}")
    click.echo(f"parent run {parent_run_id}: {len(result.members)} member run(s), {len(result.failed)} not finished")
