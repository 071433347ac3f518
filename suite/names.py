"""Every metric, param, tag and event name the suite writes; other modules import these, never retype them."""

from __future__ import annotations

# Units the metric names are in (`mem` and the other *_gib figures are GiB; vendor tools print MiB).
GIB = 1024**3
MIB = 1024**2

# Metrics (the published tables' column names).
E2E_TIME = "e2e_time"
P_WHOLE = "p_whole"
P_TRAIN = "p_train"
P_CORE = "p_core"
P_CORE_UNSYNCED = "p_core_unsynced"  # the published pages' host-clock p_core (no closing synchronize)
# p_whole with init's time added (from the run's start, before the dataset is built, to the end of training): the
# published Mask R-CNN pages' p_whole definition
P_WHOLE_WITH_INIT = "p_whole_with_init"
MAP = "map"
MAP_SEGM = "map_segm"
MAP_BEST = "map_best"
MAP_SEGM_BEST = "map_segm_best"
MEM = "mem"
MEM_RESERVED = "mem_reserved"
MEM_TOTAL = "mem_total"
MEM_SMI = "mem_smi"  # peak device memory used as the driver reports it (NVML, mx-smi, xpu-smi), sampled
DEVICE_UTILIZATION_MEAN = "device_utilization_mean"
DEVICE_POWER_MEAN_W = "device_power_mean_w"
DEVICE_ENERGY_J = "device_energy_j"  # over the whole training phase, warm-up included
DEVICE_TEMPERATURE_MAX_C = "device_temperature_max_c"
# Telemetry time series (step = sample index).
DEVICE_MEMORY_USED_GIB = "device_memory_used_gib"
DEVICE_UTILIZATION_PCT = "device_utilization_pct"
DEVICE_POWER_W = "device_power_w"
DEVICE_TEMPERATURE_C = "device_temperature_c"
ENERGY_J = "energy_j"  # device energy over the measured region (all devices)
ENERGY_PER_IMAGE = "energy_per_image"  # joules per trained image over the measured region
MFU = "mfu"  # model FLOP utilisation from p_core (suite.engine.flops)
TIME_TO_TARGET = "time_to_target"  # seconds from the run's start to the evaluation that met every target (MLPerf)
IMAGES = "images"
STEPS = "steps"
EPOCHS_RUN = "epochs_run"
INIT_TIME = "init_time"
INIT_EVAL_TIME = "init_eval_time"  # the untrained model's evaluation (eval.initial), inside init_time
TRAIN_TIME = "train_time"
TRAIN_LOOP_TIME = "train_loop_time"
CORE_TIME = "core_time"
CORE_UNSYNCED_TIME = "core_unsynced_time"
EVAL_TIME = "eval_time"
TRACKING_TIME = "tracking_time"  # seconds the run waited on its tracking calls (left out of the measured phase)
TRACKING_STALL_TIME = "tracking_stall_time"  # of which in calls to a tracking server that failed
# Per-step metrics.
LOSS = "loss"
LR = "lr"
STEP_THROUGHPUT = "step_throughput"

SUMMARY_METRICS = (E2E_TIME, P_WHOLE, P_TRAIN, P_CORE, MAP, MAP_SEGM, MEM, MEM_TOTAL)
IOU_TYPE_METRIC = {"bbox": MAP, "segm": MAP_SEGM}
IOU_TYPE_BEST_METRIC = {"bbox": MAP_BEST, "segm": MAP_SEGM_BEST}

# Params (besides the flattened config).
PARAM_BS = "bs"
PARAM_LR = "lr"
PARAM_GLOBAL_BS = "global_bs"
PARAM_PRECISION = "precision"
PARAM_MODE = "mode"
PARAM_EPOCHS = "epochs"
PARAM_MAX_STEPS = "max_steps"
PARAM_FLOPS_PER_IMAGE = "mfu.flops_per_image"
PARAM_PEAK_TFLOPS = "mfu.peak_tflops"
# What the model trains: the same for a run with a weights file and one without (cases.detection.models).
PARAM_TRAINABLE_LAYERS = "model.trainable_backbone_layers_effective"
PARAM_TRAINABLE_PARAMETERS = "model.trainable_parameters"
PARAM_FROZEN_STATISTICS = "model.frozen_statistics"  # where the frozen batch-norm statistics came from

# Tags.
TAG_CASE = "bench.case"
TAG_VENDOR = "bench.vendor"
TAG_ACCELERATOR = "bench.accelerator"  # the suite's one name per accelerator model (vendor.yaml accelerator.name)
TAG_ACCELERATOR_PUBLISHED = "bench.accelerator_published"  # a published page's own wording of it
TAG_TOPOLOGY = "bench.topology"
TAG_NNODES = "bench.nnodes"
TAG_NPROC_PER_NODE = "bench.nproc_per_node"
TAG_WORLD_SIZE = "bench.world_size"
TAG_PRECISION = "bench.precision"
TAG_FIX_HP = "bench.fix_hp"
TAG_MODE = "bench.mode"
TAG_SOURCE = "bench.source"
TAG_ROUND = "bench.round"
TAG_CONFIG_HASH = "bench.config_hash"
TAG_STATUS = "bench.status"
TAG_FAILURE = "bench.failure"
TAG_SPOOLED = "bench.spooled"  # "true": recorded offline and uploaded by `accelbench sync` (suite.tracking.spool)
TAG_SPOOL_REASON = "bench.spool_reason"  # why tracking went offline
TAG_WEIGHTS = "bench.backbone_init"
TAG_REPRODUCES = "bench.reproduces"  # the publisher's config file the run's config reproduces, or REPRODUCES_NONE
REPRODUCES_NONE = "none: the suite's own config"
TAG_CONVERGED = "bench.converged"
TAG_COMPLIANCE = "bench.compliance"  # the event log's verdict (suite.engine.compliance): "pass" or "fail: ..."
TAG_DATA = "bench.data"
TAG_DATA_ROOT = "bench.data_root"
TAG_DATA_FINGERPRINT = "bench.data_fingerprint"
TAG_KIND = "bench.kind"
TAG_CASES = "bench.cases"
TAG_TOPOLOGIES = "bench.topologies"
TAG_REPEAT = "bench.repeat"
TAG_FAILED_MEMBERS = "bench.failed_members"
TAG_SKIPPED = "bench.skipped"
TAG_IMPLAUSIBLE = "bench.implausible"  # figures that cannot be what they say (suite.results.scaling), or "none"
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_DIRTY = "bench.git_dirty"
ENV_TAG_PREFIX = "env."
MATH_TAG_PREFIX = "math."
SOURCE_MEASURED = "measured"
SOURCE_PUBLISHED = "published"
# Published rows (suite.results.published).
TAG_PRECISION_PUBLISHED = "bench.precision_published"
TAG_PUBLISHED_KEY = "bench.published_key"
TAG_PUBLISHED_FROM = "bench.published_from"
TAG_PUBLISHED_CELLS = "bench.published_cells"
TAG_PUBLISHED_NOTE = "bench.published_note"
TAG_PUBLISHED_HASH = "bench.published_hash"
TAG_PAGE_VERSION = "bench.page_version"  # "seed" or the publisher's commit (and date) of the page
# "true": a published row whose page a newer version supersedes; "false" on every other benchmark row (measured ones
# included), so that a saved view can filter on it (MLflow's filters skip runs that lack the tag).
TAG_SUPERSEDED = "bench.superseded"
TAG_PAGE_SAME_AS = "bench.page_same_as"  # a dated version of the publisher's page this seed equals
TAG_P_WHOLE_CLOCK = "bench.p_whole_clock"  # "training", or "run_start" (the Mask R-CNN pages' p_whole)
# Comparison runs (suite.results.report).
KIND_COMPARISON = "comparison"
KIND_MATRIX = "matrix"
TAG_BASELINE = "bench.baseline"
TAG_VENDORS = "bench.vendors"
TAG_DESCRIPTION = "mlflow.note.content"
TAG_SCHEDULER = "bench.scheduler"  # "slurm" or "kubernetes": the job the run ran in (suite.launch.scheduler)
TAG_JOB_SCRIPT = "bench.job_script"  # the sbatch script `accelbench submit` wrote (also an artifact, scheduler/)
ENV_JOB_SCRIPT = "ACCELBENCH_JOB_SCRIPT"  # how the job tells the run where its script is
TAG_RUN_COLOR = "mlflow.runColor"  # the MLflow UI draws a run in this colour (suite.colors: its accelerator's)

# Artifacts.
ARTIFACT_CONFIG = "config/resolved.yaml"
ARTIFACT_PROVENANCE = "config/provenance.yaml"
ARTIFACT_ENVIRONMENT = "environment.json"
ARTIFACT_EVENTS = "events.jsonl"
ARTIFACT_REPORT_HTML = "comparison.html"  # a comparison run's whole report in one file, opened by its page's link
ARTIFACT_EVAL = "eval.json"

# Event log keys (MLPerf mllog vocabulary).
EV_INTERVAL_START = "INTERVAL_START"
EV_INTERVAL_END = "INTERVAL_END"
EV_POINT = "POINT_IN_TIME"
KEY_RUN = "run"
KEY_INIT = "init"
KEY_EPOCH = "epoch"
KEY_TRAIN = "train"
KEY_EVAL = "eval"
KEY_EVAL_ACCURACY = "eval_accuracy"
KEY_TARGET_REACHED = "target_reached"
KEY_MEASURE_START = "measure_start"
KEY_MEM_PER_RANK = "mem_per_rank"


def log_format(rank: int | str | None, node: int | str = 0) -> str:
    """Log lines name the node and rank they come from (torchrun workers of several nodes log side by side);
    rank None is a node's launcher process."""
    where = f"node{node}/" + ("launcher" if rank is None else f"rank{rank}")
    return f"%(asctime)s {where} %(levelname)s %(name)s: %(message)s"
