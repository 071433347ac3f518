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


MAX_COUNT_DIGITS = 6  # a million nodes or devices per node is beyond any cluster; more digits is a typo


def parse_topology(text: str) -> Topology:
    match = PATTERN.match(text)
    if not match:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ConfigError(f"topology must look like NxM (nodes x devices per node), e.g. 1x8; got {shown!r}",
                          key="topology")
    if any(len(group) > MAX_COUNT_DIGITS for group in match.groups()):
        raise ConfigError(f"more than {MAX_COUNT_DIGITS} digits in a count of {text[:20]}...", key="topology")
    return Topology(int(match.group(1)), int(match.group(2)))
