"""One benchmark run, single process: check everything, then train and record it as one MLflow run.

`prepare()` does every check that can fail on bad input (adapter, precision, data, annotations, weights) before a
run exists, so a typo never leaves a half-written run. `execute()` owns the run's lifecycle: whatever happens, the
run ends FINISHED, FAILED (with `bench.failure`) or KILLED, with the metrics measured so far.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from torch import __version__ as torch_version
from torch import device as torch_device
from torch.nn.parallel import DistributedDataParallel
from torch.random import fork_rng

from suite import environment, names, registry, signals
from suite.compliance import check_log
from suite.config import ResolvedConfig
from suite.distributed import Collectives, DistContext, destroy_process_group, init_process_group
from suite.errors import BenchError, ConfigError, DataError
from suite.errors import describe as describe_error
from suite.events import EventLog
from suite.flops import count_training_flops, flops_per_image, mfu
from suite.hooks import ProgressHook, TrackingHook
from suite.precision import profile
from suite.progress import Progress
from suite.provenance import DatasetRecord
from suite.redaction import RedactingFormatter
from suite.run_page import measured_description
from suite.scoped_env import scoped_env
from suite.spool import SpoolingTracker
from suite.telemetry import Sampler
from suite.timing import PhaseClock, phase_metrics
from suite.tracking import NullTracker, Tracker
from suite.trainer import EvalRecord, Trainer, Workload
from suite.vendors.base import VendorAdapter

logger = logging.getLogger(__name__)
SUITE_ROOT = Path(__file__).resolve().parent

TrackerFactory = Callable[..., Tracker]


class Case(Workload, Protocol):
    """What the runner needs from a case beyond the trainer's Workload (cases.detection.case.DetectionCase)."""

    trainable_layers: int | None

    def check(self, data_root: Path) -> None: ...
    @property
    def backbone_init(self) -> str: ...
    def build_model(self) -> Any: ...
    def optimizer(self, model: Any, options: Mapping[str, Any]) -> Any: ...
    def train_loader(self, pin_memory: bool, context: DistContext) -> Any: ...
    def dataset_record(self, root: Path) -> DatasetRecord | None: ...
    def sample_batch(self, count: int) -> Any: ...
    def schedulers(self, optimizer: Any, iters_per_epoch: int) -> tuple[Any, Any]: ...


@dataclass
class Prepared:
    resolved: ResolvedConfig
    adapter: VendorAdapter
    case: Case
    data_root: Path
    synthetic: bool
    env: dict[str, str] = field(default_factory=dict)  # the run's environment variables (run_environment)


@dataclass
class RunOutcome:
    run_id: str
    status: str
    resolved: ResolvedConfig
    metrics: dict[str, float] = field(default_factory=dict)
    final_map: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    pending_sync: Path | None = None  # the spool folder to `accelbench sync`, when tracking failed during the run


def run_environment(resolved: ResolvedConfig, adapter: VendorAdapter) -> dict[str, str]:
    """The variables a run sets: `accelerator.env` plus what the precision implies on this stack.

    A stack's runtime reads such switches when it initialises, so they are in place before the first device call
    (prepare's availability check) and stay for the run's duration only. `accelerator.env` may not contradict the
    precision: the label must say what math ran.
    """
    config = resolved.config
    implied = adapter.precision_env(config.train.precision)
    for name, value in implied.items():
        given = config.accelerator.env.get(name)
        if given is not None and given != value:
            key = f"accelerator.env.{name}"
            raise ConfigError(f"{given!r} contradicts train.precision {config.train.precision} (which sets "
                              f"{value!r}); leave it out", source=resolved.provenance.get(key), key=key)
    return {**config.accelerator.env, **implied}


def make_adapter(resolved: ResolvedConfig) -> VendorAdapter:
    return registry.adapter_class(resolved.config.accelerator.adapter, where="accelerator.adapter")()


def prepare(resolved: ResolvedConfig, *, data_root: Path | None = None, synthetic: bool = False,
            adapter: VendorAdapter | None = None) -> Prepared:
    """Every input check, before any run is created. Raises BenchError (exit 2) on bad input.

    `adapter` defaults to the one the config names (tests pass one built on a stand-in device runtime).
    """
    config = resolved.config
    adapter = adapter or make_adapter(resolved)
    adapter.check_precision(config.train.precision)
    env = run_environment(resolved, adapter)
    with scoped_env(env):  # the first device call: the runtime starts with the run's switches in place
        adapter.check_available()
        if config.world_size > 1:
            from suite.launcher import missing_devices

            shortfall = missing_devices(config.nproc_per_node, adapter.device_count())
            if shortfall is not None:
                raise BenchError(f"topology {config.topology} {shortfall} for the {adapter.name} adapter")

    if synthetic:
        from cases.detection.synthetic import SyntheticSpec, ensure_dataset

        spec = SyntheticSpec(**config.data.synthetic.model_dump())
        root = ensure_dataset(spec)
    else:
        chosen = data_root or (Path(config.data.root) if config.data.root else None)
        if chosen is None:
            raise DataError("no data: pass --data-root DIR (COCO2017 layout), set data.root, or use --synthetic")
        root = chosen.expanduser()
    case = registry.case_class(config.case)(config)
    case.check(root)
    return Prepared(resolved, adapter, case, root, synthetic, env)


def run_params(resolved: ResolvedConfig) -> dict[str, Any]:
    config = resolved.config
    throughput = config.train.mode == "throughput"
    params: dict[str, Any] = {
        names.PARAM_BS: config.hp.bs,
        names.PARAM_LR: config.hp.lr,
        names.PARAM_GLOBAL_BS: config.hp.bs * config.world_size,
        names.PARAM_PRECISION: config.train.precision,
        names.PARAM_MODE: config.train.mode,
        names.PARAM_EPOCHS: None if throughput else config.hp.epochs,
        names.PARAM_MAX_STEPS: config.train.warmup_steps + config.train.steps if throughput
        else config.train.max_steps,
    }
    params.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in resolved.flat().items()})
    return params


def run_tags(prepared: Prepared) -> dict[str, str]:
    config = prepared.resolved.config
    tags = {
        names.TAG_CASE: config.case,
        names.TAG_VENDOR: config.vendor,
        names.TAG_ACCELERATOR: config.accelerator.name,
        names.TAG_TOPOLOGY: config.topology,
        names.TAG_NNODES: str(config.nnodes),
        names.TAG_NPROC_PER_NODE: str(config.nproc_per_node),
        names.TAG_WORLD_SIZE: str(config.world_size),
        names.TAG_PRECISION: config.train.precision,
        names.TAG_FIX_HP: prepared.resolved.fix_hp_label,
        names.TAG_MODE: config.train.mode,
        names.TAG_SOURCE: names.SOURCE_MEASURED,
        names.TAG_ROUND: "0",
        names.TAG_CONFIG_HASH: prepared.resolved.config_hash(),
        names.TAG_STATUS: "RUNNING",
        names.TAG_WEIGHTS: prepared.case.backbone_init,
        names.TAG_DATA: "synthetic" if prepared.synthetic else "path",
        names.TAG_DATA_ROOT: str(prepared.data_root),
    }
    git = environment.git_state(SUITE_ROOT)
    if git:
        tags[names.TAG_GIT_COMMIT] = git["commit"]
        tags[names.TAG_GIT_DIRTY] = git["dirty"]
    return tags


def step_flags(adapter: VendorAdapter, precision: str) -> dict[str, str]:
    """The precision's memory format and optimizer implementation, recorded with the math flags."""
    options = adapter.optimizer_options(precision)
    return {"memory_format": "channels_last" if profile(precision).channels_last else "contiguous",
            "optimizer_impl": next((k for k, on in options.items() if on), "default")}


def what_ran(prepared: Prepared) -> dict[str, str]:
    """The facts at the top of the run's page."""
    config = prepared.resolved.config
    return {"case": config.case, "accelerator": f"{config.accelerator.name} ({config.vendor})",
            "topology": config.topology, "precision": config.train.precision, "mode": config.train.mode,
            "fix_hp": prepared.resolved.fix_hp_label,
            "data": "synthetic" if prepared.synthetic else "COCO-layout path",
            "backbone": prepared.case.backbone_init}


def describe(prepared: Prepared) -> str:
    """The description while the run is in progress; `_final_description` replaces it when it ends."""
    return " · ".join(f"{key} **{value}**" for key, value in what_ran(prepared).items()) + "\n\n*running*"


def _final_description(prepared: Prepared, outcome: RunOutcome, experiment_id: str | None) -> str:
    from suite.report import outcome_row

    return measured_description(row=outcome_row(outcome), what=what_ran(prepared), experiment_id=experiment_id,
                                failure=outcome.failure)


def _final_metrics(trainer: Trainer | None, clock: PhaseClock | None, adapter: VendorAdapter, device: Any,
                   collectives: Collectives, started_at: float, train_started_at: float | None,
                   events: EventLog | None = None, telemetry: Sampler | None = None) -> dict[str, float]:
    """The run's summary metrics: images summed over ranks, phase times and memory maxed over ranks.

    Collective: every rank must call it (except on the failure path of a single process).
    """
    metrics: dict[str, float] = {}
    if clock is not None:
        images, *times = clock.raw()
        (images,) = collectives.sum([images])
        *job_times, unsynced = collectives.max([*times, clock.core_unsynced_s])
        metrics.update(phase_metrics(images, *job_times))
        if unsynced > 0 and images > 0:
            metrics[names.CORE_UNSYNCED_TIME] = unsynced
            metrics[names.P_CORE_UNSYNCED] = images / unsynced
    if trainer is not None:
        metrics[names.STEPS] = float(trainer.state.step)
        metrics[names.EPOCHS_RUN] = float(trainer.state.epoch)
        for iou_type, metric in names.IOU_TYPE_METRIC.items():
            values = [r.metrics[metric] for r in trainer.state.evals if metric in r.metrics]
            if values:
                metrics[names.IOU_TYPE_BEST_METRIC[iou_type]] = max(values)
    if device is not None:
        memory = adapter.memory_gib(device)
        per_rank = collectives.gather_objects(memory)
        if events is not None:
            events.point(names.KEY_MEM_PER_RANK, per_rank)
        for key in memory:
            metrics[key] = max(m.get(key, 0.0) for m in per_rank)
        # Sampled device telemetry: the peak memory is the job's peak, power and energy add up over devices.
        summaries = [s for s in collectives.gather_objects(telemetry.summary() if telemetry else {}) if s]
        if summaries:
            for key, combine in ((names.MEM_SMI, max), (names.DEVICE_POWER_MEAN_W, sum),
                                 (names.DEVICE_ENERGY_J, sum), (names.DEVICE_TEMPERATURE_MAX_C, max)):
                values = [s[key] for s in summaries if key in s]
                if values:
                    metrics[key] = combine(values)
            utilization = [s[names.DEVICE_UTILIZATION_MEAN] for s in summaries if names.DEVICE_UTILIZATION_MEAN in s]
            if utilization:
                metrics[names.DEVICE_UTILIZATION_MEAN] = sum(utilization) / len(utilization)
            # Energy per image needs every device's counter: one device without one leaves it missing.
            measured = [s.get(names.ENERGY_J) for s in summaries]
            if len(summaries) == collectives.context.world_size and None not in measured \
                    and metrics.get(names.IMAGES):
                metrics[names.ENERGY_J] = sum(measured)
                metrics[names.ENERGY_PER_IMAGE] = metrics[names.ENERGY_J] / metrics[names.IMAGES]
    if train_started_at is not None:
        metrics[names.INIT_TIME] = train_started_at - started_at
    metrics[names.E2E_TIME] = time.time() - started_at
    return metrics


def _tracking_metrics(tracker: Tracker) -> dict[str, float]:
    """How long this run waited on its tracking server (inside e2e_time; left out of the measured phase)."""
    metrics = {names.TRACKING_TIME: tracker.wait_s}
    if tracker.stall_s > 0:
        metrics[names.TRACKING_STALL_TIME] = tracker.stall_s
    return metrics


class RunFiles:
    """This rank's local folder (event log, rank log, config and eval files); rank 0 uploads it as artifacts."""

    def __init__(self, rank: int, parent: Path | None = None, node: int = 0) -> None:
        if parent is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="accelbench-run-"))
        else:
            self.workdir = parent / f"rank{rank}"
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.parent = parent
        self.log_handler = logging.FileHandler(self.workdir / f"rank{rank}.log", encoding="utf-8")
        self.log_handler.setFormatter(RedactingFormatter(names.log_format(rank, node)))
        logging.getLogger().addHandler(self.log_handler)
        self.events = EventLog(self.workdir / names.ARTIFACT_EVENTS, rank=rank)

    def close(self) -> None:
        self.events.close()
        logging.getLogger().removeHandler(self.log_handler)
        self.log_handler.close()

    def upload(self, tracker: Tracker) -> None:
        for path in sorted(self.workdir.rglob("*")):
            if path.is_file():
                parent = path.parent.relative_to(self.workdir).as_posix()
                tracker.log_artifact(path, None if parent == "." else parent)
        if self.parent is not None:
            # Other ranks on this node share the parent folder; their logs go under rank_logs/.
            for log in sorted(self.parent.glob("rank*/rank*.log")):
                if log.parent != self.workdir:
                    tracker.log_artifact(log, "rank_logs")

    def remove(self) -> None:
        self.close()
        if self.parent is None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def execute(prepared: Prepared, *, started_at: float, tracker_factory: TrackerFactory = SpoolingTracker.start,
            context: DistContext | None = None, run_dir: Path | None = None,
            extra_tags: dict[str, str] | None = None) -> RunOutcome:
    """Train and record one run (one rank of it, in a distributed job; rank 0 records).

    Re-raises a failure after the run has been ended as FAILED or KILLED.
    """
    context = context or DistContext()
    files = RunFiles(context.rank, run_dir, context.node_rank)
    try:
        with scoped_env(prepared.env):
            return _execute(prepared, files, started_at, tracker_factory if context.is_main else NullTracker.start,
                            context, extra_tags or {})
    finally:
        files.remove()
        destroy_process_group()


def _execute(prepared: Prepared, files: RunFiles, started_at: float, tracker_factory: TrackerFactory,
             context: DistContext, extra_tags: dict[str, str]) -> RunOutcome:
    config = prepared.resolved.config
    events = files.events
    events.start(names.KEY_RUN, case=config.case, vendor=config.vendor, topology=config.topology,
                 mode=config.train.mode)
    events.start(names.KEY_INIT)
    tracker = tracker_factory(experiment=config.tracking.experiment,
                              run_name=f"{config.case}/{config.vendor}/{config.topology}",
                              description=describe(prepared), tags={**run_tags(prepared), **extra_tags})
    outcome = RunOutcome(run_id=tracker.run_id, status="RUNNING", resolved=prepared.resolved)
    adapter = prepared.adapter
    trainer: Trainer | None = None
    clock: PhaseClock | None = None
    device = None
    collectives = Collectives(context, torch_device("cpu"))
    train_started_at: float | None = None
    telemetry: Sampler | None = None
    try:
        env_record: dict[str, str] = {}
        if context.is_main:  # only rank 0 records; the other ranks' copies would never be uploaded
            tracker.log_params(run_params(prepared.resolved))
            env_record = environment.collect(adapter, prepared.env)
            tracker.set_tags({names.ENV_TAG_PREFIX + k: v for k, v in env_record.items()})
            _write_config_artifacts(files.workdir, prepared.resolved)
            _log_dataset(tracker, prepared)

        device = adapter.device(context.local_rank)
        init_process_group(context, config.accelerator.dist_backend, config.dist.timeout_s)
        collectives = Collectives(context, device)
        adapter.manual_seed(config.hp.seed)
        flags = {**adapter.set_math_flags(config.train.precision), **step_flags(adapter, config.train.precision)}
        tracker.set_tags({names.MATH_TAG_PREFIX + k: v for k, v in flags.items()})
        node_records = _node_environments(adapter, prepared.env, context, collectives, env_record)
        if context.is_main:
            merged = environment.merge_nodes(node_records)
            if len(node_records) > 1:
                tracker.set_tags({names.ENV_TAG_PREFIX + k: v for k, v in merged.items()})
            _write_environment(files.workdir, merged, node_records, flags, config.nnodes)
        case = prepared.case
        model = case.build_model().to(device, memory_format=profile(config.train.precision).memory_format)
        tracker.log_params({"model.trainable_backbone_layers_effective": case.trainable_layers})
        # Only rank 0 records MFU, so only rank 0 counts (the other ranks would redo the same work).
        peak_tflops = config.accelerator.peak_tflops.get(profile(config.train.precision).peak_key)
        flops = _training_flops(prepared, model, device) if context.is_main and peak_tflops else None
        if flops is not None:
            tracker.log_params({names.PARAM_FLOPS_PER_IMAGE: f"{flops:.6g}", names.PARAM_PEAK_TFLOPS: peak_tflops})
        optimizer = case.optimizer(model, adapter.optimizer_options(config.train.precision))
        if context.distributed:
            model = DistributedDataParallel(model, device_ids=[device.index] if device.index is not None else None)
        loader = case.train_loader(adapter.pin_memory, context)
        warmup, lr_schedule = case.schedulers(optimizer, len(loader))
        probe = adapter.telemetry_probe(device)
        if probe is not None:
            telemetry = Sampler(probe, config.tracking.telemetry_interval_s)
        clock = PhaseClock(lambda: adapter.synchronize(device), barrier=collectives.barrier,
                           on_edge=telemetry.mark if telemetry is not None else None)
        log_every = config.tracking.log_every
        hooks = [ProgressHook(log_every), TrackingHook(tracker, log_every)] if context.is_main \
            else [ProgressHook(log_every)]
        trainer = Trainer(config=config, workload=case, model=model, optimizer=optimizer, warmup=warmup,
                          lr_schedule=lr_schedule, loader=loader, adapter=adapter, device=device,
                          events=events, clock=clock, collectives=collectives, hooks=hooks)
        adapter.reset_peak_memory(device)
        events.end(names.KEY_INIT)
        train_started_at = time.time()
        if telemetry is not None:
            telemetry.start()
        state = trainer.train()
        if telemetry is not None:
            telemetry.stop()

        outcome.metrics = _final_metrics(trainer, clock, adapter, device, collectives, started_at,
                                         train_started_at, events, telemetry)
        if flops is not None and peak_tflops and names.P_CORE in outcome.metrics:
            outcome.metrics[names.MFU] = mfu(outcome.metrics[names.P_CORE], flops, peak_tflops, config.world_size)
        if state.target_reached_at is not None:
            outcome.metrics[names.TIME_TO_TARGET] = state.target_reached_at - started_at
        outcome.metrics.update(_tracking_metrics(tracker))
        tracker.log_metrics(outcome.metrics, step=state.epoch)
        if telemetry is not None:
            _log_telemetry_series(tracker, telemetry)
        if state.evals:
            _write_eval_artifacts(files.workdir, state.evals)
            outcome.final_map = {k: v for k, v in state.evals[-1].metrics.items()
                                 if k in names.IOU_TYPE_METRIC.values()}
        if config.train.mode == "convergence":
            tracker.set_tags({names.TAG_CONVERGED: str(state.converged).lower()})
        collectives.barrier()  # every rank is done and its log written before rank 0 uploads them
        outcome.status = "FINISHED"
    except BaseException as error:
        Progress.abandon()  # end a bar drawn mid-phase, so the error starts on its own line
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C, or SIGTERM/SIGHUP through suite.signals
            outcome.status, outcome.failure = "KILLED", signals.describe(error)
        else:
            outcome.status = "FAILED"
            outcome.failure = describe_error(error)
        logger.error("run %s %s: %s", tracker.run_id, outcome.status, outcome.failure)
        # What this rank measured; no collectives here, since the other ranks may be gone.
        if telemetry is not None:
            telemetry.stop()
        with contextlib.suppress(Exception):
            outcome.metrics = _final_metrics(trainer, clock, adapter, device, Collectives(DistContext(), device),
                                             started_at, train_started_at, telemetry=telemetry)
            outcome.metrics.update(_tracking_metrics(tracker))
            tracker.log_metrics(outcome.metrics, step=trainer.state.epoch if trainer else 0)
        tracker.set_tags({names.TAG_FAILURE: f"rank {context.rank}: {outcome.failure}" if context.distributed
                          else outcome.failure})
        raise
    finally:
        if telemetry is not None:
            telemetry.probe.close()
        events.end(names.KEY_RUN, status=outcome.status)
        files.close()
        tracker.set_tags({names.TAG_STATUS: outcome.status,
                          names.TAG_COMPLIANCE: check_log(files.workdir / names.ARTIFACT_EVENTS).tag(),
                          names.TAG_DESCRIPTION: _final_description(prepared, outcome, tracker.experiment_id)})
        try:
            files.upload(tracker)
        finally:
            tracker.finish(outcome.status)
            outcome.run_id = tracker.run_id  # a run recorded offline has one once its spool is uploaded
            outcome.pending_sync = tracker.pending_sync
    return outcome


def _write_config_artifacts(workdir: Path, resolved: ResolvedConfig) -> None:
    config_dir = workdir / "config"
    config_dir.mkdir()
    (config_dir / "resolved.yaml").write_text(resolved.to_yaml(), encoding="utf-8")
    provenance = {"provenance": resolved.provenance, "fix_hp": resolved.fix_hp,
                  "config_hash": resolved.config_hash()}
    (config_dir / "provenance.yaml").write_text(yaml.safe_dump(provenance, sort_keys=False), encoding="utf-8")


def _training_flops(prepared: Prepared, model: Any, device: Any) -> float:
    """Training FLOPs per image of this run's model and first batch (counted once, then cached)."""
    config = prepared.resolved.config
    case = prepared.case
    key = {"case": config.case, "model": config.model.model_dump(), "bs": config.hp.bs,
           "data": str(prepared.data_root), "torch": torch_version}

    def count() -> int:
        # Counting draws random numbers (flips, RPN sampling): keep the run's random streams as they were.
        devices = [device] if device.type == "cuda" else []
        with fork_rng(devices=devices):
            batch = case.to_device(case.sample_batch(config.hp.bs), device)
            return count_training_flops(model, batch, case.loss)

    value, cached = flops_per_image(key, config.hp.bs, count)
    logger.info("training FLOPs per image: %.4g (%s)", value, "cached" if cached else "counted")
    return value


def _node_environments(adapter: VendorAdapter, run_env: Mapping[str, str], context: DistContext,
                       collectives: Collectives, main_record: dict[str, str]) -> list[dict[str, str]]:
    """One environment record per node (its local rank 0 collects it), in node order. Collective."""
    if not context.distributed:
        return [main_record]
    mine = None
    if context.local_rank == 0:
        mine = main_record if context.is_main else environment.collect(adapter, run_env)
    return [r for r in collectives.gather_objects(mine) if r is not None]


def _write_environment(workdir: Path, merged: dict[str, str], nodes: list[dict[str, str]], math: dict[str, str],
                       nnodes: int) -> None:
    document = {"fields": merged, "math_flags": math,
                "mlperf_system_description": environment.mlperf_system_description(merged, nnodes),
                "nodes": nodes}
    (workdir / names.ARTIFACT_ENVIRONMENT).write_text(json.dumps(document, indent=2), encoding="utf-8")


def _log_dataset(tracker: Tracker, prepared: Prepared) -> None:
    record = prepared.case.dataset_record(prepared.data_root)
    if record is None:
        return
    tracker.log_dataset(record)
    tracker.set_tags({names.TAG_DATA_FINGERPRINT: record.digest})
    tracker.log_params({f"data.{k}": v for k, v in record.counts.items()})


def _log_telemetry_series(tracker: Tracker, telemetry: Sampler) -> None:
    for index, at, values in telemetry.series():
        tracker.log_metrics(values, step=index, timestamp=at)


def _write_eval_artifacts(workdir: Path, evals: list[EvalRecord]) -> None:
    history = [{"epoch": r.epoch, "step": r.step, "images_evaluated": r.metrics.get("images_evaluated"),
                "stats": r.metrics.get("stats"), "summaries": r.metrics.get("summaries")} for r in evals]
    (workdir / "eval.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    for record in evals:
        if "predictions" in record.metrics:
            path = workdir / "predictions" / f"epoch{record.epoch}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(record.metrics["predictions"]), encoding="utf-8")


def run(resolved: ResolvedConfig, *, data_root: Path | None = None, synthetic: bool = False,
        started_at: float, tracker_factory: TrackerFactory = SpoolingTracker.start,
        extra_tags: dict[str, str] | None = None, adapter: VendorAdapter | None = None) -> RunOutcome:
    prepared = prepare(resolved, data_root=data_root, synthetic=synthetic, adapter=adapter)
    return execute(prepared, started_at=started_at, tracker_factory=tracker_factory, extra_tags=extra_tags)
