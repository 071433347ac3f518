"""What makes a benchmark row that row: case, vendor, accelerator, topology, precision, fix_hp, mode, source, round
and config hash, written as the same MLflow tags and params by measured runs, published rows and the tests.

The comparison tables group and match rows by these tags, so they have one definition here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from suite import names
from suite.colors import accelerator_color
from suite.topology import parse_topology


def number_text(value: float) -> str:
    """A number as the published pages print it: 16, not 16.0; 0.16 as is."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def run_name(case: str, vendor: str, topology: str, source: str = names.SOURCE_MEASURED, fix_hp: str = "/",
             version: str | None = None) -> str:
    """A benchmark row's MLflow run name: accelerator, topology and source first (what tells rows apart in a table
    of one case, in the few characters a runs table's name column shows), the case last.

    `nvidia_a100 1x8 published fix_hp 1b5a0303 · faster_rcnn`, `cpu 1x1 measured · retinanet`.
    """
    settings = "" if fix_hp == "/" else " fix_hp"
    page = f" {version}" if version else ""
    return f"{vendor} {topology} {source}{settings}{page} · {case}"


@dataclass(frozen=True)
class RowIdentity:
    case: str
    vendor: str
    accelerator: str
    topology: str
    precision: str
    fix_hp: str
    mode: str
    source: str = names.SOURCE_MEASURED
    round: int = 0
    config_hash: str | None = None
    bs: int | None = None  # per-device batch size, for the params
    lr: float | None = None

    @classmethod
    def of(cls, resolved: Any, *, source: str = names.SOURCE_MEASURED, round_index: int = 0) -> RowIdentity:
        """The identity of a run of `resolved` (a suite.config.ResolvedConfig)."""
        config = resolved.config
        return cls(case=config.case, vendor=config.vendor, accelerator=config.accelerator.name,
                   topology=config.topology, precision=config.train.precision, fix_hp=resolved.fix_hp_label,
                   mode=config.train.mode, source=source, round=round_index, config_hash=resolved.config_hash(),
                   bs=config.hp.bs, lr=config.hp.lr)

    @property
    def run_name(self) -> str:
        return run_name(self.case, self.vendor, self.topology, self.source, self.fix_hp)

    @property
    def world_size(self) -> int:
        return parse_topology(self.topology).world_size

    def tags(self) -> dict[str, str]:
        topology = parse_topology(self.topology)
        tags = {
            names.TAG_CASE: self.case,
            names.TAG_VENDOR: self.vendor,
            names.TAG_ACCELERATOR: self.accelerator,
            names.TAG_TOPOLOGY: self.topology,
            names.TAG_NNODES: str(topology.nodes),
            names.TAG_NPROC_PER_NODE: str(topology.per_node),
            names.TAG_WORLD_SIZE: str(topology.world_size),
            names.TAG_PRECISION: self.precision,
            names.TAG_FIX_HP: self.fix_hp,
            names.TAG_MODE: self.mode,
            names.TAG_SOURCE: self.source,
            names.TAG_ROUND: str(self.round),
            names.TAG_RUN_COLOR: accelerator_color(self.vendor),
        }
        if self.config_hash:
            tags[names.TAG_CONFIG_HASH] = self.config_hash
        return tags

    def params(self) -> dict[str, str]:
        params = {names.PARAM_PRECISION: self.precision, names.PARAM_MODE: self.mode}
        if self.bs is not None:
            params[names.PARAM_BS] = str(self.bs)
            params[names.PARAM_GLOBAL_BS] = str(self.bs * self.world_size)
        if self.lr is not None:
            params[names.PARAM_LR] = number_text(self.lr) if self.source == names.SOURCE_PUBLISHED else str(self.lr)
        return params
