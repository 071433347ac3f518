"""Scaling efficiency from throughputs of one vendor-case at several topologies (shared/reference.md section 1).

    within a node:  p(1xM) / (M * p(1x1))
    across nodes:   p(NxM) / (N * p(1xM))

Repeats of a topology are reduced to their median first, so one noisy round does not decide the figure.

A figure is flagged (`implausible`) when it cannot be what it says: an efficiency above SCALING_LIMIT (more devices
doing more than their share: a noisy or throttled reference, not a real speed-up), or repeats that spread more than
the difference being reported (the difference is noise until more repeats narrow it).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from suite.topology import parse_topology

THROUGHPUTS = ("p_whole", "p_train", "p_core")
SCALING_LIMIT = 1.05  # a little above 1: larger per-device batches and caches can make small gains real


def relative_spread(values: Sequence[float]) -> float | None:
    """(max - min) / median of repeats; None for fewer than two or a zero median."""
    if len(values) < 2:
        return None
    median = statistics.median(values)
    return (max(values) - min(values)) / abs(median) if median else None


def spread_note(difference: float, spreads: Mapping[str, float | None], what: str) -> str | None:
    """A note when the repeats of any side (`spreads`: label -> relative spread) spread more than the relative
    `difference` reported between the sides; None when the difference stands out of the noise."""
    label, widest = max(((k, v) for k, v in spreads.items() if v is not None), key=lambda kv: kv[1],
                        default=(None, None))
    if widest is None or widest <= abs(difference):
        return None
    return (f"{label} repeats spread {100 * widest:.0f}%, more than the {100 * abs(difference):.0f}% {what}: "
            f"within noise")


def reference_of(topology: str) -> tuple[str, int] | None:
    """The topology an efficiency divides by, and the factor: 1xM -> (1x1, M), NxM -> (1xM, N); None for 1x1."""
    nodes, per_node = parse_topology(topology)
    if nodes == 1 and per_node > 1:
        return "1x1", per_node
    if nodes > 1:
        return f"1x{per_node}", nodes
    return None


def implausible(throughput: Mapping[str, Sequence[float]], efficiency: Mapping[str, float]) -> dict[str, list[str]]:
    """{topology: notes} for the efficiencies that cannot be trusted as they stand (see the module docstring)."""
    flagged: dict[str, list[str]] = {}
    for topology, value in efficiency.items():
        reference = reference_of(topology)
        assert reference is not None
        notes = []
        if value > SCALING_LIMIT:
            notes.append(f"scaling {value:.2f} is above {SCALING_LIMIT}: more than linear is implausible")
        spreads = {t: relative_spread(throughput.get(t, ())) for t in (reference[0], topology)}
        noisy = spread_note(value - 1, spreads, "difference from linear scaling")
        if noisy:
            notes.append(noisy)
        if notes:
            flagged[topology] = notes
    return flagged


def efficiencies(throughput: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """{topology: efficiency} for every topology whose reference topology was also measured.

    `throughput` maps a topology ("1x2") to the throughputs of its repeats.
    """
    median = {topology: statistics.median(values) for topology, values in throughput.items() if values}
    result: dict[str, float] = {}
    for topology, value in median.items():
        found = reference_of(topology)
        if found is None:
            continue
        reference, factor = found
        if median.get(reference, 0) > 0:
            result[topology] = value / (factor * median[reference])
    return result
