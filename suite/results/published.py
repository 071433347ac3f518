"""Published reference results: read the vendors' `published.yaml` pages and record them as MLflow runs.

Each `vendor_configs/<vendor>/published.yaml` holds a publisher's results tables cell by cell, as text. This module
is the one place that interprets those cells:

    ""  or "/"          missing (never zero)
    "37.0%"            0.370
    "0.382 && 0.343"   map 0.382 and map_segm 0.343 (Mask R-CNN's "bbox && segm")
    "38.4 && 34.6"     map 0.384 and map_segm 0.346: an mAP above 1 is a percent without its sign
    "38.8/40.0"        mem_smi 38.8 and mem_total 40.0 (GiB, "used/total": the vendor tool's reading, which
                       measured runs record as mem_smi; their allocator peak `mem` is another quantity)
    "bs=16,lr=0.16"    fix_hp: bs 16 and lr 0.16 over the case defaults; "/" means the case defaults

Every row carries the page it came from and that page's version (`bench.published_from`,
`bench.page_version`); where a vendor has several versions of one case's page, the rows of all but the newest
are tagged `bench.superseded=true`, and comparisons and saved views leave them out unless asked for every
version. Every published row trained whole epochs with an evaluation after each (reference.md section 12), so its
mode is `convergence`.

`import_published` writes one run per row, with the params, tags and metric names of measured runs plus
`bench.source=published`, and is idempotent: a row whose run already exists unchanged is left alone.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from suite import names, registry
from suite.config import ResolvedConfig, Strict, load_user_yaml, read_text_file
from suite.errors import ConfigError, UnknownNameError
from suite.identity import RowIdentity, number_text, run_name
from suite.redaction import redact_uri
from suite.registry import config_source, topology_file, vendor_dir, vendors
from suite.tables import markdown_table
from suite.topology import parse_topology
from suite.tracking.client import client as mlflow_client
from suite.tracking.client import tag_clause
from suite.tracking.locks import named_lock

PUBLISHED_FILE = "published.yaml"
COLUMNS = ("config", "precision", "fix_hp", "e2e_time", "p_whole", "p_train", "p_core", "map", "mem")
MISSING = ("", "/")
# "A100单机8卡（1x8）" (full-width brackets), "MXC500 两机16卡（2x8）" or a bare "1x8": the topology is NxM.
_TOPOLOGY = re.compile(r"(?:^|[（(])\s*(\d+)x(\d+)\s*(?:[）)]|$)")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
# Every published row, 1x1 and 2x8 included, trained whole epochs and evaluated after each (reference.md 12).
CONVERGENCE = "convergence"
SEED_VERSION = "seed"
P_WHOLE_CLOCKS = ("training", "run_start")


class PublishedPage(Strict):
    source: str = Field(description="where the page came from")
    version: str = Field("not stated", min_length=1, description="'seed' (the user's copy) or the publisher's "
                         "commit")
    date: str | None = Field(None, description="the version's date (YYYY-MM-DD), where known")
    same_as: str | None = Field(None, description="a dated version of the publisher's page this one equals")
    note: str | None = Field(None, description="what a reader of this page's rows should know")
    case: str
    precision: dict[str, str] = Field(default_factory=dict, description="this page's labels -> the math that ran, "
                                      "over the file's map")
    p_whole_clock: str = Field("training", description="training: p_whole's clock covers training; run_start: it "
                               "starts before the dataset is built (the Mask R-CNN pages)")
    environment: dict[str, str] = Field(default_factory=dict)
    columns: tuple[str, ...]
    rows: list[list[str]]


class PublishedFile(Strict):
    precision: dict[str, str] = Field(description="the pages' precision label -> the math that ran")
    pages: list[PublishedPage]


@dataclass(frozen=True)
class PublishedRow:
    """One row of a published table, interpreted."""

    vendor: str
    case: str
    topology: str
    precision: str            # what math ran (tf32 for the A100's "fp32")
    precision_published: str  # the page's own label
    fix_hp: str               # as printed ("/" = case defaults)
    hp: dict[str, float]      # bs and lr after fix_hp
    metrics: dict[str, float]
    environment: dict[str, str]
    source: str
    cells: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    version: str = SEED_VERSION
    date: str | None = None
    same_as: str | None = None
    latest: bool = True        # no newer version of this vendor's page for this case is shipped
    p_whole_clock: str = "training"
    mode: str = CONVERGENCE

    @property
    def key(self) -> str:
        """Identifies the row across imports: one vendor-case-topology-fix_hp row per page version."""
        return f"{self.vendor}|{self.case}|{self.topology}|{self.fix_hp}|{self.version}"

    @property
    def version_label(self) -> str:
        """The page's version as shown: `seed`, or `1b5a0303 (2025-11-11)`."""
        return f"{self.version} ({self.date})" if self.date else self.version

    @property
    def run_name(self) -> str:
        return run_name(self.case, self.vendor, self.topology, names.SOURCE_PUBLISHED, self.fix_hp, self.version)

    def identity(self) -> RowIdentity:
        # The suite's one name for the accelerator (its vendor config's), the same as its measured runs carry; the
        # page's own wording ("曦云®C500 64G", "MXC 500 64GB") is kept in bench.accelerator_published.
        return RowIdentity(case=self.case, vendor=self.vendor, accelerator=canonical_accelerator(self.vendor),
                           topology=self.topology, precision=self.precision, fix_hp=self.fix_hp, mode=self.mode,
                           source=names.SOURCE_PUBLISHED, bs=int(self.hp["bs"]), lr=self.hp["lr"])

    def params(self) -> dict[str, str]:
        return self.identity().params()

    def tags(self) -> dict[str, str]:
        tags = {
            **self.identity().tags(),
            names.TAG_PRECISION_PUBLISHED: self.precision_published,
            names.TAG_STATUS: "FINISHED",
            names.TAG_PUBLISHED_KEY: self.key,
            names.TAG_PUBLISHED_FROM: self.source,
            names.TAG_PAGE_VERSION: self.version_label,
            names.TAG_SUPERSEDED: str(not self.latest).lower(),
            names.TAG_P_WHOLE_CLOCK: self.p_whole_clock,
            names.TAG_PUBLISHED_CELLS: " | ".join(self.cells),
            names.TAG_DESCRIPTION: self.description(),
        }
        if self.same_as:
            tags[names.TAG_PAGE_SAME_AS] = self.same_as
        if "accelerator_model" in self.environment:
            tags[names.TAG_ACCELERATOR_PUBLISHED] = self.environment["accelerator_model"]
        if self.notes:
            tags[names.TAG_PUBLISHED_NOTE] = "; ".join(self.notes)
        env = dict(self.environment)
        env.setdefault("accelerator_count", str(parse_topology(self.topology).per_node))
        if names.MEM_TOTAL in self.metrics:
            env.setdefault("accelerator_memory_gib", f"{self.metrics[names.MEM_TOTAL]:.1f}")
        tags.update({f"{names.ENV_TAG_PREFIX}{k}": v for k, v in env.items()})
        return tags

    def fingerprint(self) -> str:
        """Changes whenever anything this row records changes, so a re-import knows what to replace."""
        content = {"params": self.params(), "tags": self.tags(), "metrics": self.metrics, "name": self.run_name}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def description(self) -> str:
        table = markdown_table([dict(zip(COLUMNS, self.cells, strict=True))], COLUMNS)
        same = f", the same as {self.same_as}" if self.same_as else ""
        newest = "" if self.latest else " A newer version of this page is shipped: this row is hidden by default."
        lines = [f"Published result of **{self.case}** on **{self.vendor}**, topology {self.topology}, "
                 f"imported from `{self.source}`, version **{self.version_label}**{same} (cells as printed; "
                 f"blank = not published).{newest}", "", table]
        if self.precision != self.precision_published:
            lines += ["", f"The page says `{self.precision_published}`; the math that ran was `{self.precision}`."]
        lines += [f"\nNote: {note}" for note in self.notes]
        return "\n".join(lines)


# --- cell parsing -------------------------------------------------------------------------------------------
def parse_number(cell: str) -> float | None:
    """A plain number or a percentage ("37.0%" -> 0.37); blank and "/" are missing."""
    text = cell.strip()
    if text in MISSING:
        return None
    percent = text.endswith("%")
    digits = text[:-1].strip() if percent else text
    if not _NUMBER.match(digits):
        raise ValueError(f"{cell!r} is not a number")
    value = float(digits)
    return round(value / 100, 10) if percent else value


def parse_map(cell: str) -> dict[str, float]:
    """"0.3529", "37.0%" or Mask R-CNN's "0.382 && 0.343" (bbox && segm); a value above 1 is a percent printed
    without its sign ("38.4 && 34.6" on the Kunlunxin page)."""
    parts = cell.split("&&")
    if len(parts) > 2:
        raise ValueError(f"{cell!r} has more than two mAP values")
    values = [parse_number(p) for p in parts]
    values = [round(v / 100, 10) if v is not None and 1 < v <= 100 else v for v in values]
    if len(values) == 2 and None in values:
        raise ValueError(f"{cell!r} has an empty side")
    found = {key: value for key, value in zip((names.MAP, names.MAP_SEGM), values, strict=False)
             if value is not None}
    for value in found.values():
        if not 0 <= value <= 1:
            raise ValueError(f"{cell!r} is not an mAP between 0 and 1 (or 0% and 100%)")
    return found


def parse_mem(cell: str) -> dict[str, float]:
    """"38.8/40.0" -> the vendor tool's used memory (mem_smi) and the device total, GiB; a lone number is the used
    memory."""
    text = cell.strip()
    if text in MISSING:
        return {}
    used, slash, total = text.partition("/")
    result = {}
    if (value := parse_number(used)) is not None:
        result[names.MEM_SMI] = value
    if slash:
        if (value := parse_number(total)) is None:
            raise ValueError(f"{cell!r} has no total after '/'")
        result[names.MEM_TOTAL] = value
    return result


def parse_fix_hp(cell: str) -> dict[str, float]:
    """"bs=16,lr=0.16" -> {"bs": 16.0, "lr": 0.16}; "/" -> {}."""
    text = cell.strip()
    if text in MISSING:
        return {}
    result: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        number = parse_number(value) if sep else None
        if number is None:
            raise ValueError(f"{item.strip()!r} is not key=number")
        result[key.strip()] = number
    return result


def topology_in_cell(cell: str) -> str:
    """The NxM a page's config cell names ("1x8", "2 x 8"), normalised to the suite's spelling."""
    match = _TOPOLOGY.search(cell.strip())
    if not match:
        raise ValueError(f"{cell!r} names no NxM topology")
    return str(parse_topology(f"{int(match.group(1))}x{int(match.group(2))}"))


# --- loading ------------------------------------------------------------------------------------------------
def published_vendors() -> list[str]:
    return [v for v in vendors() if (vendor_dir(v) / PUBLISHED_FILE).is_file()]


def load_published(selected: Iterable[str] | None = None) -> list[PublishedRow]:
    """Every published row of the selected vendors (all vendors with a published.yaml by default)."""
    available = published_vendors()
    chosen = list(selected) if selected is not None else available
    rows: list[PublishedRow] = []
    for vendor in chosen:
        if vendor not in available:
            raise UnknownNameError("vendor with published results", vendor, available)
        rows.extend(load_vendor_file(vendor, vendor_dir(vendor) / PUBLISHED_FILE))
    keys = [row.key for row in rows]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(f"published rows appear twice: {', '.join(duplicates)}")
    return _mark_latest(rows)


def _version_order(row: PublishedRow) -> tuple[bool, str]:
    """Dated versions are newer than undated ones (the seeds are copies of older pages), later dates newer."""
    return row.date is not None, row.date or ""


def _mark_latest(rows: list[PublishedRow]) -> list[PublishedRow]:
    """Rows of a page with a newer version of the same vendor's page for the same case are not the latest."""
    newest: dict[tuple[str, str], tuple[bool, str]] = {}
    for row in rows:
        page = (row.vendor, row.case)
        newest[page] = max(newest.get(page, _version_order(row)), _version_order(row))
    return [row if _version_order(row) == newest[(row.vendor, row.case)] else dataclasses.replace(row, latest=False)
            for row in rows]


def load_vendor_file(vendor: str, path: Path) -> list[PublishedRow]:
    text = read_text_file(path, str(path))
    try:
        data = PublishedFile.model_validate(load_user_yaml(text))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from e
    defaults = _case_defaults()
    rows = []
    for page_index, page in enumerate(data.pages):
        where_page = f"{path}: pages[{page_index}] ({page.source})"
        if page.case not in defaults:
            raise UnknownNameError("case", page.case, sorted(defaults))
        if page.p_whole_clock not in P_WHOLE_CLOCKS:
            raise ConfigError(f"{where_page}: p_whole_clock must be one of {', '.join(P_WHOLE_CLOCKS)}, not "
                              f"{page.p_whole_clock!r}")
        if tuple(page.columns) != COLUMNS:
            raise ConfigError(f"{where_page}: columns must be {list(COLUMNS)}, not {list(page.columns)}")
        for row_index, cells in enumerate(page.rows):
            where = f"{where_page} row {row_index + 1}"
            if len(cells) != len(COLUMNS):
                raise ConfigError(f"{where}: {len(cells)} cells, the columns are {len(COLUMNS)}")
            try:
                rows.append(_interpret(vendor, page, tuple(str(c) for c in cells),
                                       {**data.precision, **page.precision}, defaults[page.case]))
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from e
    return rows


def _interpret(vendor: str, page: PublishedPage, cells: tuple[str, ...], precision_map: dict[str, str],
               case_hp: dict[str, float]) -> PublishedRow:
    cell = dict(zip(COLUMNS, cells, strict=True))
    topology = topology_in_cell(cell["config"])
    label = cell["precision"].strip()
    if label not in precision_map:
        raise ValueError(f"precision {label!r} has no entry in the file's precision map {precision_map}")
    fix_hp = cell["fix_hp"].strip() or "/"
    changes = parse_fix_hp(fix_hp)
    unknown = sorted(set(changes) - set(case_hp))
    if unknown:
        raise ValueError(f"fix_hp names {', '.join(unknown)}, which the case has no default for")
    hp = {**case_hp, **changes}
    metrics: dict[str, float] = {}
    for column in (names.E2E_TIME, names.P_WHOLE, names.P_TRAIN, names.P_CORE):
        try:
            value = parse_number(cell[column])
        except ValueError as e:
            raise ValueError(f"{column}: {e}") from e
        if value is not None:
            metrics[column] = value
    for column, parser in (("map", parse_map), ("mem", parse_mem)):
        try:
            metrics.update(parser(cell[column]))
        except ValueError as e:
            raise ValueError(f"{column}: {e}") from e
    row = PublishedRow(vendor=vendor, case=page.case, topology=topology, precision=precision_map[label],
                       precision_published=label, fix_hp=fix_hp, hp=hp, metrics=metrics,
                       environment=dict(page.environment), source=page.source, cells=cells, version=page.version,
                       date=page.date, same_as=page.same_as, p_whole_clock=page.p_whole_clock)
    suite_config = _suite_config(row)
    notes = (*((page.note,) if page.note else ()), *_config_notes(row, suite_config),
             *_workload_notes(row, suite_config))
    return dataclasses.replace(row, notes=notes)


def _case_defaults() -> dict[str, dict[str, float]]:
    """bs and lr of every case's layer-1 defaults (the published harness's case defaults)."""
    from suite.config import case_defaults
    from suite.registry import cases

    return {case: {k: float(case_defaults(case)["hp"][k]) for k in ("bs", "lr")} for case in cases()}


@functools.cache
def canonical_accelerator(vendor: str) -> str:
    """The accelerator's name as the vendor's config gives it (`accelerator.name` in vendor.yaml), else the vendor."""
    from suite.config import read_yaml_layer
    from suite.errors import BenchError

    try:
        path = registry.vendor_dir(vendor) / "vendor.yaml"
        name = (read_yaml_layer(path, registry.config_source(path)).data.get("accelerator") or {}).get("name")
    except BenchError:
        return vendor
    return str(name) if name else vendor


def _suite_config(row: PublishedRow) -> ResolvedConfig | None:
    """The suite's config for the row's vendor, case and topology (None where it has none), resolved once for the
    notes below."""
    from suite.config import resolve
    from suite.errors import BenchError

    try:
        return resolve(row.case, row.vendor, row.topology)
    except BenchError:
        return None


def _config_notes(row: PublishedRow, resolved: ResolvedConfig | None) -> tuple[str, ...]:
    """Where the page's bs/lr differ from what the suite's topology file for that row sets (reference.md 3).

    Sometimes the page is wrong (the C500 faster_rcnn 1x8 page prints bs=8,lr=0.08 for a bs=2,lr=0.02 run),
    sometimes the vendor published a second setting (the A100's 1x8 bs=16 row); either way a reader comparing
    against a measured run of that config should know.
    """
    path = topology_file(row.vendor, row.case, row.topology)
    if resolved is None or path is None:
        return ()
    source = config_source(path)
    hp = resolved.config.hp
    differing = {k: float(getattr(hp, k)) for k in ("bs", "lr")
                 if resolved.provenance[f"hp.{k}"] == source and float(getattr(hp, k)) != row.hp[k]}
    if not differing:
        return ()
    said = ",".join(f"{k}={number_text(row.hp[k])}" for k in differing)
    ran = ",".join(f"{k}={number_text(v)}" for k, v in differing.items())
    page = f"the page's fix_hp '/' (case defaults) means {said}" if row.fix_hp == "/" else f"the page says {said}"
    return (f"{page}; the suite's config for this topology ({source}) uses {ran}",)


def _workload_notes(row: PublishedRow, resolved: ResolvedConfig | None) -> tuple[str, ...]:
    """What ran in this row that a reader would not guess from its cells: int16 convolutions behind "fp32", ops on
    the host CPU, a p_whole clock that starts before the dataset is built, a suite config no publisher file backs."""
    notes = []
    if row.precision == "fp32_conv_int16":
        notes.append(f"the page says {row.precision_published}, but the publisher's config sets "
                     f"XDNN_CONV_GEMM_DTYPE=int16: the convolutions' GEMMs ran in int16 (precision fp32_conv_int16)")
    if row.p_whole_clock == "run_start":
        notes.append("this page's p_whole clock starts before the dataset is built and includes the initial "
                     f"evaluation: ratios to it use a measured row's {names.P_WHOLE_WITH_INIT}")
    if resolved is None:
        return tuple(notes)
    config = resolved.config
    fallback = config.accelerator.env.get("XMLIR_D_FORCE_FALLBACK_STR")
    if fallback:
        notes.append(f"the publisher's config runs {fallback} on the host CPU (XMLIR_D_FORCE_FALLBACK_STR); the "
                     f"suite's config does the same (math.cpu_fallback_ops)")
    if config.reproduces is None:
        notes.append(f"no publisher config file backs this row: the suite's config for {row.topology} is its own")
    return tuple(notes)


# --- recording ----------------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    experiment_id: str = ""


def import_published(rows: Sequence[PublishedRow], experiment: str = "accelbench",
                     tracking_uri: str | None = None, prune: bool = True) -> ImportReport:
    """Record `rows` as FINISHED runs in `experiment`; rows already recorded unchanged are skipped.

    A row whose content changed is replaced (its old run deleted), and with `prune` a published run whose row is
    no longer in the data of the imported vendors is deleted, so the store mirrors the shipped data exactly.
    """

    client = mlflow_client(tracking_uri)
    # Two imports at once would each find a row missing and both create it: one at a time per experiment.
    with named_lock("import-published", redact_uri(client.tracking_uri), experiment):
        return _import(client, rows, experiment, prune)


def _import(client: Any, rows: Sequence[PublishedRow], experiment: str, prune: bool) -> ImportReport:
    from mlflow.entities import Metric, Param

    from suite.tracking.client import ensure_experiment
    from suite.tracking.run_page import comparison_links, comparison_views
    from suite.tracking.views import save_views

    experiment_id = ensure_experiment(experiment, client)
    save_views(client, experiment_id, {v for row in rows for v in comparison_views(row.case, row.topology)})
    report = ImportReport(experiment_id=experiment_id)
    existing: dict[str, list[Any]] = {}
    for run in _published_runs(client, experiment_id):
        existing.setdefault(run.data.tags.get(names.TAG_PUBLISHED_KEY, ""), []).append(run)

    for row in rows:
        fingerprint = row.fingerprint()
        previous = existing.pop(row.key, [])
        keep = [r for r in previous if r.info.status == "FINISHED"
                and r.data.tags.get(names.TAG_PUBLISHED_HASH) == fingerprint]
        if keep:
            for extra in [r for r in previous if r is not keep[0]]:
                client.delete_run(extra.info.run_id)
            report.unchanged.append(row.key)
            continue
        for old in previous:
            client.delete_run(old.info.run_id)
        tags = {**row.tags(), names.TAG_PUBLISHED_HASH: fingerprint}
        # The links name the experiment, so they are added here, outside the row's fingerprint.
        tags[names.TAG_DESCRIPTION] += "\n\n" + comparison_links(experiment_id, row.case, row.topology)
        # The identifying tags go with the request that creates the run: an import killed before the next request
        # leaves a RUNNING run the next import finds by its key and replaces (it is not FINISHED), never an
        # anonymous one.
        run = client.create_run(experiment_id, run_name=row.run_name, tags=tags)
        now = int(time.time() * 1000)
        try:
            client.log_batch(run.info.run_id,
                             metrics=[Metric(k, v, now, 0) for k, v in row.metrics.items()],
                             params=[Param(k, v) for k, v in row.params().items()])
            client.set_terminated(run.info.run_id, "FINISHED")
        except BaseException:
            client.delete_run(run.info.run_id)  # no half-written published row
            raise
        (report.replaced if previous else report.created).append(row.key)

    imported_vendors = {row.vendor for row in rows}
    if prune:
        for key, runs in existing.items():
            if key.split("|")[0] in imported_vendors or not key:
                for run in runs:
                    client.delete_run(run.info.run_id)
                report.removed.append(key)
    return report


def _published_runs(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], tag_clause(names.TAG_SOURCE, names.SOURCE_PUBLISHED),
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs
