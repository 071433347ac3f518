"""Layered, typed benchmark configuration with the source of every key.

Layers, lowest first: case defaults (`cases/<case>/defaults.yaml`) -> `vendor_configs/<vendor>/vendor.yaml` ->
`vendor_configs/<vendor>/<case>/case.yaml` (a vendor's settings for one case, all topologies; optional) ->
`vendor_configs/<vendor>/<case>/<NxM>.yaml` -> `--config` files -> `--set key.path=value` flags. Dicts merge
deeply, scalars and lists replace. The merged result is validated once by pydantic (unknown keys and bad types are
errors naming the file or flag and the key) and frozen.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from suite import files, registry
from suite.errors import ConfigError, UnknownNameError, did_you_mean
from suite.topology import parse_topology

Precision = Literal["fp32", "tf32", "amp_bf16", "amp_fp16", "amp_bf16_fast",
                    "fp32_conv_int16"]  # = suite.precision.PRECISIONS
Mode = Literal["convergence", "throughput", "smoke"]
MAX_COUNT = 10**9  # steps, epochs, iterations: far beyond any real run, and within every library's integers
MAX_IMAGE_SIDE = 10_000
BUILTIN_SOURCE = "built-in default"
SUITE_OWN_CONFIG = "the suite's own config: no publisher file backs it"
# Keys that, left unset (or null), take another key's value when the config is validated.
DERIVED_KEYS = {"data.eval_bs": "hp.bs"}
SET_FLAG = "--set"


MAX_YAML_DEPTH = 32  # no config nests deeper than a few levels; bounding it keeps the loader off the stack limit
MAX_KEY_LENGTH = 200  # the longest dotted config key is under 60 characters; longer is a mistake, said at once
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


MAX_YAML_VALUES = 100_000  # scalars and collections a document may expand to (no config comes near it)


class _UserYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a bounded nesting depth (deeper documents hit Python's recursion limit)."""

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # PyYAML's scanner reads up to 1,024 characters past an open bracket (it may be a key) and rechecks every
        # open bracket at each token: 20,000 `[` cost seconds before the composer's depth check is reached, so
        # flow nesting is also bounded here, as it is scanned.
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested more than {MAX_YAML_DEPTH} levels deep, line {self.line + 1}")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested more than {MAX_YAML_DEPTH} levels deep, line "
                                 f"{self.peek_event().start_mark.line + 1}")
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth

    def construct_yaml_int(self, node: Any) -> int:
        # Python refuses to convert an integer of more than 4,300 digits (a ValueError, which PyYAML does not
        # turn into a YAMLError): no config value is that large.
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(node.value)} characters is too large", node.start_mark) from None

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys silently; in a config that hides which value was meant.
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` merges keys the mapping's own keys may override: not a duplicate
                key = self.construct_object(key_node, deep=True)
                try:
                    line = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
                here = key_node.start_mark.line + 1
                if line != here:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_shown(key)} at line {here} (first at line {line})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep)


_UserYamlLoader.add_constructor("tag:yaml.org,2002:int", _UserYamlLoader.construct_yaml_int)


def _check_expansion(document: Any) -> None:
    """YAML aliases share one object, so a few hundred bytes of `*a` references load cheaply, then expand to
    gigabytes when anything walks them (validation, hashing, logging): count the walk first, with a bound."""
    seen = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"expands to more than {MAX_YAML_VALUES} values (YAML aliases?)")
        if depth > 2 * MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested more than {2 * MAX_YAML_DEPTH} levels deep through YAML aliases")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def load_user_yaml(text: str) -> Any:
    """Parse YAML someone typed or pointed at (config files, --set values, plugin data): safe types only, bounded
    depth and bounded expansion of aliases. Raises yaml.YAMLError."""
    try:
        document = yaml.load(text, Loader=_UserYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    _check_expansion(document)
    return document


def read_text_file(path: Path, source: str) -> str:
    """A user's text file as UTF-8, or a ConfigError naming it (unreadable, not a regular file, larger than a
    config file can be, or not UTF-8)."""
    try:
        return files.read_text(path, limit=files.CONFIG_FILE_LIMIT)
    except files.UnreadableFileError as e:
        raise ConfigError(str(e), source=source) from None


def _is_number_type(annotation: Any) -> bool:
    """int or float, alone or in a union (`int | None`), and not bool (a bool field takes true/false)."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) is Annotated:
        return _is_number_type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return bool not in args and any(_is_number_type(arg) for arg in args)
    return False


class Strict(BaseModel):
    # Infinite or NaN values validate as floats but cannot work as a learning rate, timeout or peak.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value: Any, info: Any) -> Any:
        # pydantic's lax mode takes `bs: true` as 1; a boolean where a number belongs is a mistake, not a count
        if isinstance(value, bool) and _is_number_type(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, got a boolean")
        return value


class HyperParams(Strict):
    """Training hyperparameters; `fix_hp` is every key here that differs from the case defaults."""

    bs: int = Field(gt=0, le=4096, description="batch size per device")
    lr: float = Field(gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    lr_steps: list[Annotated[int, Field(ge=0, le=MAX_COUNT)]] = Field(
        default_factory=lambda: [16, 22], description="MultiStepLR milestones (epochs)")
    lr_gamma: float = Field(0.1, gt=0)
    warmup_factor: float = Field(1e-3, gt=0, le=1)
    warmup_iters: int = Field(1000, ge=0, le=MAX_COUNT,
                              description="linear warmup (optimizer steps), capped at iterations-per-epoch - 1 "
                                          "outside throughput mode")
    epochs: int = Field(26, gt=0, le=MAX_COUNT, description="maximum epochs (convergence) / epochs to run (smoke)")
    seed: int = Field(0, ge=0, lt=2**32, description="torch and data-order seed (torch takes up to 64 bits, the "
                      "loaders' workers 32)")


class SyntheticData(Strict):
    train: int = Field(32, gt=0, le=1_000_000)
    val: int = Field(8, gt=0, le=1_000_000)
    width: int = Field(128, ge=32, le=MAX_IMAGE_SIDE)
    height: int = Field(128, ge=32, le=MAX_IMAGE_SIDE)
    seed: int = Field(0, ge=0, lt=2**32)


class DataSettings(Strict):
    root: str | None = None
    synthetic: SyntheticData = SyntheticData()
    workers: int = Field(2, ge=0, le=256, description="loader worker processes per rank")
    eval_bs: int | None = Field(None, gt=0, le=4096, description="evaluation batch per device; null = hp.bs, as in "
                                "every publisher config")
    aspect_ratio_group_factor: int = Field(3, ge=-1, le=100, description="-1 disables aspect-ratio grouping")
    hflip_prob: float = Field(0.5, ge=0, le=1)
    val_limit: int | None = Field(None, gt=0, le=MAX_COUNT, description="evaluate on the first N val images only")


class TrainSettings(Strict):
    mode: Mode = "convergence"
    precision: Precision = "tf32"
    max_steps: int | None = Field(None, gt=0, le=MAX_COUNT, description="cap on optimizer steps (convergence/smoke)")
    warmup_steps: int = Field(5, ge=0, le=MAX_COUNT, description="throughput mode: untimed steps before the budget")
    steps: int = Field(20, gt=0, le=MAX_COUNT, description="throughput mode: timed steps")
    targets: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict,
                                                                     description="iou type -> mAP target")
    stop_at_target: bool = True
    # cuDNN's algorithm choice, applied where the stack has cuDNN (NVIDIA, MetaX) and recorded as math.* tags.
    cudnn_benchmark: bool = Field(False, description="autotune convolution algorithms per input shape")
    cudnn_deterministic: bool = Field(False, description="deterministic convolution algorithms only")


class AcceleratorSettings(Strict):
    adapter: str
    name: str
    dist_backend: str
    # How a scheduler hands out this accelerator, for `accelbench submit`: the SLURM GRES name (`--gres=gpu:8`) and
    # the Kubernetes extended resource its device plugin registers (`nvidia.com/gpu`); null: none to ask for.
    slurm_gres: str | None = None
    k8s_resource: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    peak_tflops: dict[Precision, PositiveFloat] = Field(
        default_factory=dict, description="dense peak TFLOP/s of one device per precision, for MFU; unknown = absent")

    @field_validator("env", mode="before")
    @classmethod
    def _stringify_env(cls, value: Any) -> Any:
        # YAML reads `XACC_ENABLE: 1` as an int; env values are strings.
        if isinstance(value, Mapping):
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, _)")
            if len(name) > MAX_KEY_LENGTH:  # it becomes the param key accelerator.env.<name>: MLflow takes 250
                raise ValueError(f"{name[:40]!r}... is {len(name)} characters long; MLflow takes parameter names "
                                 f"of at most 250, so at most {MAX_KEY_LENGTH} here")
            if "\0" in text:
                raise ValueError(f"the value of {name} holds a NUL character")
        return value


class DistSettings(Strict):
    """Multi-process settings; torchrun gets them per node (the node rank is a command-line flag, not config)."""

    master_addr: str = "127.0.0.1"
    master_port: int = Field(29500, gt=0, lt=65536)
    timeout_s: float = Field(1800, gt=0, le=7 * 86400,
                             description="collective timeout: a dead peer ends the job within this")
    monitor_interval_s: float = Field(1.0, gt=0, le=3600, description="how often torchrun checks its workers")


class EvalSettings(Strict):
    initial: bool = Field(False, description="evaluate the untrained model once before training (inside init and "
                          "e2e_time, as the published runs did); convergence and smoke modes")
    save_predictions: bool = Field(False, description="attach each evaluation's merged COCO results as JSON")
    backend: Literal["pycocotools", "faster_coco_eval"] = Field(
        "pycocotools", description="COCO evaluation code: pycocotools (reference) or faster_coco_eval (same "
        "stats, much faster; optional extra fast-eval)")


MAX_EXPERIMENT_NAME_LENGTH = 500  # MLflow's own limit (mlflow.utils.validation); a longer name fails at run start


class TrackingSettings(Strict):
    experiment: str = Field("accelbench", min_length=1, max_length=MAX_EXPERIMENT_NAME_LENGTH)
    log_every: int = Field(10, gt=0, le=MAX_COUNT, description="steps between per-step metric records")
    telemetry_interval_s: float = Field(1.0, gt=0, le=3600,
                                        description="device telemetry sampling period (NVML, ...)")


class ClusterSettings(Strict):
    """How `accelbench submit` asks a scheduler for the job (not what the job runs: outside the config hash)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    reservation: str | None = None
    time: str | None = Field(None, description="SLURM time limit (`--time`), e.g. 2:00:00")
    cpus_per_task: int | None = Field(None, gt=0, le=4096, description="CPUs per node's task (default: the "
                                      "data loader workers of every device, plus one per device)")
    warning: str | None = Field("USR1@120", pattern=r"^(B:)?(USR1|USR2)@\d+$",
                                description="`--signal`: stop at a step boundary this many seconds before the "
                                "time limit, keeping what was measured; null: none")
    sbatch: list[str] = Field(default_factory=list, description="more `#SBATCH` options, e.g. --exclusive")
    image: str | None = Field(None, description="Kubernetes: the container image the pods run")
    namespace: str | None = Field(None, description="Kubernetes: the PyTorchJob's namespace")


class BenchConfig(Strict):
    case: str
    vendor: str
    topology: str
    # The publisher's config file a per-topology file reproduces key by key; null: the suite's own config.
    reproduces: str | None = Field(None, min_length=1, max_length=500)
    hp: HyperParams
    # The case's own section: a case declares its schema (`model_settings`, a pydantic model), validated with the
    # rest at resolve time; a case without one gets the section as a plain mapping.
    model: dict[str, Any] = Field(default_factory=dict)
    data: DataSettings = DataSettings()
    train: TrainSettings = TrainSettings()
    accelerator: AcceleratorSettings
    dist: DistSettings = DistSettings()
    eval: EvalSettings = EvalSettings()
    tracking: TrackingSettings = TrackingSettings()
    cluster: ClusterSettings = ClusterSettings()

    @model_validator(mode="before")
    @classmethod
    def _evaluation_batch_follows_training(cls, data: Any) -> Any:
        """`data.eval_bs: null` (the default) is the training batch, as every publisher config sets it."""
        if not isinstance(data, Mapping):
            return data
        section, hp = data.get("data"), data.get("hp")
        if isinstance(section, BaseModel):  # built in code rather than read from layers
            section = section.model_dump()
        bs = hp.get("bs") if isinstance(hp, Mapping) else getattr(hp, "bs", None)
        if (section is None or isinstance(section, Mapping)) and (section or {}).get("eval_bs") is None \
                and bs is not None:
            return {**data, "data": {**(section or {}), "eval_bs": bs}}
        return data

    @property
    def nnodes(self) -> int:
        return parse_topology(self.topology).nodes

    @property
    def nproc_per_node(self) -> int:
        return parse_topology(self.topology).per_node

    @property
    def world_size(self) -> int:
        return parse_topology(self.topology).world_size


@dataclass(frozen=True)
class Layer:
    source: str
    data: dict[str, Any]


@dataclass(frozen=True)
class ResolvedConfig:
    """A validated config plus where each leaf key came from and which hyperparameters differ from the case's."""

    config: BenchConfig
    provenance: dict[str, str]
    fix_hp: dict[str, Any] = field(default_factory=dict)

    @property
    def fix_hp_label(self) -> str:
        """The published tables' notation: `bs=16,lr=0.16`, or `/` for the case defaults."""
        return ",".join(f"{k}={_scalar_str(v)}" for k, v in self.fix_hp.items()) or "/"

    @property
    def origin(self) -> str:
        """Whose config this is: the publisher's file it reproduces, or the suite's own (shown by show-config, tagged
        as bench.reproduces and noted in comparisons)."""
        if self.config.reproduces:
            return f"reproduces the publisher's config {self.config.reproduces}"
        return SUITE_OWN_CONFIG

    def flat(self) -> dict[str, Any]:
        return flatten(self.config.model_dump())

    def config_hash(self) -> str:
        """A digest of what the run runs. Where the job meets (dist.master_addr and master_port, which a scheduler
        or a matrix picks per job) are taken as their defaults and how it is submitted (`cluster`, the accelerator's
        scheduler resource names) is left out: repeats of one config on different jobs share a hash, the same hash
        runs recorded before these keys existed or varied have."""
        dump = self.config.model_dump()
        defaults = DistSettings()
        dump["dist"].update(master_addr=defaults.master_addr, master_port=defaults.master_port)
        dump.pop("cluster", None)
        for key in ("slurm_gres", "k8s_resource"):
            dump["accelerator"].pop(key, None)
        canonical = json.dumps(dump, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.config.model_dump(), sort_keys=False)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_yaml_layer(path: Path, source: str, schema: type[BaseModel] | None = None) -> Layer:
    """A config file as a layer, its keys checked against `schema` (default: BenchConfig, with the case's `model`
    section unchecked)."""
    text = read_text_file(path, source)
    try:
        data = load_user_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {str(e).splitlines()[0]}", source=source) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping of keys, got {type(data).__name__}", source=source)
    _check_keys(data, schema or BenchConfig, "", source)
    return Layer(source, data)


def parse_set_flags(assignments: Sequence[str], schema: type[BaseModel] | None = None) -> Layer:
    """Turn `--set a.b=value` flags into one layer (values parsed as YAML, so `0.1` is a float, `null` is None)."""
    data: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if len(key) > MAX_KEY_LENGTH:  # before anything compares it with the valid keys
            raise ConfigError(f"key {_shown(key)} is {len(key)} characters long; no config key is longer than "
                              f"{MAX_KEY_LENGTH}", source=SET_FLAG)
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"expected key.path=value, got {_shown(assignment)}", source=SET_FLAG)
        try:
            value = load_user_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"value {_shown(raw)} is not valid YAML ({str(e).splitlines()[0]})", source=SET_FLAG,
                              key=key) from e
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("conflicts with another --set flag", source=SET_FLAG, key=key)
        node[parts[-1]] = value
    _check_keys(data, schema or BenchConfig, "", SET_FLAG)
    return Layer(SET_FLAG, data)


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (`X`, `X | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_class(arg)
            if found is not None:
                return found
    return None


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str, source: str) -> None:
    """Reject keys the schema does not know, per layer, so the error can name the file that has the typo."""
    fields = model.model_fields
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            if len(dotted) > MAX_KEY_LENGTH:
                raise ConfigError(f"unknown key {_shown(dotted)}, {len(dotted)} characters long; valid keys here: "
                                  f"{', '.join(fields)}", source=source)
            raise ConfigError(f"unknown key{did_you_mean(str(key), fields)}; valid keys here: "
                              f"{', '.join(fields)}", source=source, key=dotted)
        sub = _model_class(fields[key].annotation)
        if sub is not None and isinstance(value, Mapping):
            _check_keys(value, sub, dotted + ".", source)


def _leaf_sources(layer: Layer) -> dict[str, str]:
    return {key: layer.source for key in flatten(layer.data)}


def _source_of(key: str, provenance: Mapping[str, str]) -> str:
    while key:
        if key in provenance:
            return provenance[key]
        key = key.rpartition(".")[0]
    return BUILTIN_SOURCE


def _format_validation_error(error: ValidationError, provenance: Mapping[str, str]) -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    shown = first.get("input")
    got = f" (got {_shown(shown)})" if not isinstance(shown, dict) else ""
    return ConfigError(f"{first['msg']}{got}", source=_source_of(key, provenance), key=key)


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scalar_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@functools.cache
def case_defaults(case: str) -> dict[str, Any]:
    """Layer 1 of a case's config (cases/<case>/defaults.yaml), read and checked once per process; do not modify."""
    path = registry.case_defaults_file(case)
    return read_yaml_layer(path, registry.config_source(path)).data


@functools.cache
def config_class(case_schema: type[BaseModel] | None) -> type[BenchConfig]:
    """BenchConfig with the case's own schema for its `model:` section (the case's `model_settings`)."""
    if case_schema is None:
        return BenchConfig
    return create_model(f"BenchConfig_{case_schema.__name__}", __base__=BenchConfig,
                        model=(case_schema, Field(default_factory=case_schema)))


def case_config_class(case: str) -> type[BenchConfig]:
    """The config schema of runs of `case` (importing the case, which imports its framework)."""
    return config_class(getattr(registry.case_class(case), "model_settings", None))


def resolve(case: str, vendor: str, topology: str, overrides: Sequence[str] = (),
            config_files: Sequence[Path] = ()) -> ResolvedConfig:
    """Resolve the config of one vendor-case-topology run, validating every layer.

    `config_files` are extra YAML layers (`--config FILE`) applied after the topology file and before `--set`.
    The case's `model:` section is checked against the case's own schema.
    """
    parse_topology(topology)
    defaults_path = registry.case_defaults_file(case)
    schema = case_config_class(case)
    vendor_file = registry.vendor_dir(vendor) / registry.VENDOR_FILE
    vendor_case_path = registry.vendor_case_file(vendor, case)
    topology_path = registry.topology_file(vendor, case, topology)
    if topology_path is None:
        available = registry.topologies(vendor, case)
        raise UnknownNameError("topology", topology, available, where=f"vendor {vendor}, case {case}")

    layers = [
        Layer("--case/--vendor/--topology", {"case": case, "vendor": vendor, "topology": topology}),
        read_yaml_layer(defaults_path, registry.config_source(defaults_path), schema),
        read_yaml_layer(vendor_file, registry.config_source(vendor_file), schema),
        *([read_yaml_layer(vendor_case_path, registry.config_source(vendor_case_path), schema)]
          if vendor_case_path is not None else []),
        read_yaml_layer(topology_path, registry.config_source(topology_path), schema),
        *(read_yaml_layer(Path(path), str(path), schema) for path in config_files),
        parse_set_flags(overrides, schema),
    ]
    for layer in layers[1:-1]:
        for identity in ("case", "vendor", "topology"):
            if identity in layer.data:
                raise ConfigError("is chosen on the command line, not in config files", source=layer.source,
                                  key=identity)
    return resolve_layers(layers, defaults=layers[1], schema=schema)


def resolve_layers(layers: Sequence[Layer], *, defaults: Layer,
                   schema: type[BenchConfig] = BenchConfig) -> ResolvedConfig:
    merged: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for layer in layers:
        merged = deep_merge(merged, layer.data)
        provenance.update(_leaf_sources(layer))
    try:
        config = schema.model_validate(merged)
    except ValidationError as e:
        raise _format_validation_error(e, provenance) from e

    full = flatten(config.model_dump())
    given = {key for key, value in flatten(merged).items() if value is not None}
    provenance = {key: _source_of(key, provenance) for key in full}
    for key, origin in DERIVED_KEYS.items():
        if key not in given:  # filled in by the schema from another key
            provenance[key] = f"derived: = {origin} ({provenance[origin]})"
    default_hp = HyperParams.model_validate(defaults.data.get("hp", {})) if "hp" in defaults.data else None
    fix_hp: dict[str, Any] = {}
    if default_hp is not None:
        for name, value in config.hp.model_dump().items():
            if value != getattr(default_hp, name):
                fix_hp[name] = value
    return ResolvedConfig(config=config, provenance=provenance, fix_hp=fix_hp)


def render_with_sources(resolved: ResolvedConfig) -> str:
    """The resolved config as `key: value  # source` lines, for `accelbench show-config`."""
    flat = resolved.flat()
    width = max(len(f"{k}: {_scalar_str(v)}") for k, v in flat.items())
    lines = [f"{f'{k}: {_scalar_str(v)}':<{width}}  # {resolved.provenance[k]}" for k, v in flat.items()]
    lines.append(f"{'fix_hp: ' + resolved.fix_hp_label:<{width}}  # derived: hp keys that differ from the case")
    lines.append(f"{'config_hash: ' + resolved.config_hash():<{width}}  # derived")
    lines.append(f"{'origin: ' + resolved.origin:<{width}}  # derived: from `reproduces`")
    return "\n".join(lines)
