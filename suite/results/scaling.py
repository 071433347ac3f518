"""Scaling efficiency from throughputs of one vendor-case at several topologies (shared/reference.md section 1).

    within a node:  p(1xM) / (M * p(1x1))
    across nodes:   p(NxM) / (N * p(1xM))

Repeats of a topology are reduced to their median first, so one noisy round does not decide the figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from suite.topology import parse_topology

THROUGHPUTS = ("p_whole", "p_train", "p_core")


def efficiencies(throughput: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """{topology: efficiency} for every topology whose reference topology was also measured.

    `throughput` maps a topology ("1x2") to the throughputs of its repeats.
    """
    median = {topology: statistics.median(values) for topology, values in throughput.items() if values}
    result: dict[str, float] = {}
    for topology, value in median.items():
        nodes, per_node = parse_topology(topology)
        if nodes == 1 and per_node > 1:
            reference, factor = "1x1", per_node
        elif nodes > 1:
            reference, factor = f"1x{per_node}", nodes
        else:
            continue
        if median.get(reference, 0) > 0:
            result[topology] = value / (factor * median[reference])
    return result
