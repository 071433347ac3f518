"""Topologies `NxM`: N nodes with M devices each. The one parser of the name, used by config, registry and results."""

from __future__ import annotations

import re
from typing import NamedTuple

from suite.errors import ConfigError

PATTERN = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")


class Topology(NamedTuple):
    nodes: int
    per_node: int

    @property
    def world_size(self) -> int:
        return self.nodes * self.per_node

    def __str__(self) -> str:
        return f"{self.nodes}x{self.per_node}"


def is_topology(text: str) -> bool:
    return bool(PATTERN.match(text))


def parse_topology(text: str) -> Topology:
    match = PATTERN.match(text)
    if not match:
        raise ConfigError(f"topology must look like NxM (nodes x devices per node), e.g. 1x8; got {text!r}",
                          key="topology")
    return Topology(int(match.group(1)), int(match.group(2)))
