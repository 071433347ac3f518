"""The regression gate behind `accelbench check RUN_ID --against BASELINE`.

The baseline is a run id, or `vendor/case/topology`: the newest FINISHED measured run of that vendor, case and
topology at the candidate's precision, else its published row. Its value for each metric is the median over its
repeats (FINISHED runs with the same config hash, never the candidate itself: a candidate of the same config, the
gate's whole use, would otherwise widen its own noise band until it always passes). The noise threshold is the
relative spread of those repeats ((max - min) / median), but never less than the default (5%, `--threshold`), so
identical repeats do not make a 0.1% wobble a regression. A metric worse than the baseline by more than the
threshold is a regression. Each metric is compared on the baseline's definition (suite.results.definitions): against
a published baseline the candidate's p_core_unsynced stands in for its p_core (host clock), and its
p_whole_with_init for p_whole where the page's clock starts at the run's start; p_whole and e2e_time are not
compared between runs of different modes (a throughput-mode candidate against an epoch run).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from suite import names
from suite.errors import DataError, UnknownNameError
from suite.results.definitions import counterpart
from suite.results.query import runs
from suite.tracking.client import tag_clause

DEFAULT_THRESHOLD = 0.05
HIGHER_IS_BETTER = (names.P_WHOLE, names.P_TRAIN, names.P_CORE, names.MAP, names.MAP_SEGM, names.MFU)
LOWER_IS_BETTER = (names.E2E_TIME, names.ENERGY_PER_IMAGE, names.MEM, names.MEM_SMI)
DEFINITION_LABELS = {names.P_CORE_UNSYNCED: "host clock", names.P_WHOLE_WITH_INIT: "clock from the run's start"}


@dataclass
class Check:
    metric: str
    baseline: float
    candidate: float
    change: float       # relative, positive = better
    threshold: float
    repeats: int        # baseline runs with this metric, whose spread the threshold came from
    spread: float | None  # their relative spread (None with one run)
    regression: bool

    @property
    def threshold_from(self) -> str:
        """Where the threshold came from, for the printed table."""
        if self.spread is None:
            return "default (1 baseline run)"
        if self.spread >= self.threshold:
            return f"spread of {self.repeats} repeats"
        return f"default ({self.repeats} repeats, spread {100 * self.spread:.1f}%)"


@dataclass
class Gate:
    candidate_id: str
    baseline_ids: list[str]
    baseline_source: str
    checks: list[Check]

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regression]


def _run(client: Any, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise DataError(f"no run {run_id!r} in {client.tracking_uri}") from None


def _repeats(client: Any, run: Any, candidate_id: str) -> list[Any]:
    """FINISHED runs with the same config hash, vendor, case and topology as `run` (the run itself if it has no
    hash), leaving out the candidate."""
    tags = run.data.tags
    config_hash = tags.get(names.TAG_CONFIG_HASH)
    if not config_hash:
        return [run]
    same = [tag_clause(t, tags[t]) for t in (names.TAG_CONFIG_HASH, names.TAG_VENDOR, names.TAG_CASE,
                                             names.TAG_TOPOLOGY) if t in tags]
    query = " AND ".join([*same, "attributes.status = 'FINISHED'"])
    found = client.search_runs([run.info.experiment_id], query, max_results=1000)
    return [r for r in found if r.info.run_id != candidate_id] or [run]


def resolve_baseline(client: Any, spec: str, candidate: Any) -> Any:
    """A run id, or vendor/case/topology: the newest measured run at the candidate's precision, else published."""
    from suite import registry
    from suite.topology import parse_topology

    if spec.count("/") != 2:
        return _run(client, spec)
    vendor, case, topology = spec.split("/")
    if vendor not in registry.vendors():
        raise UnknownNameError("vendor", vendor, registry.vendors(), where="--against")
    if case not in registry.cases():
        raise UnknownNameError("case", case, registry.cases(), where="--against")
    parse_topology(topology)
    precision = candidate.data.tags.get(names.TAG_PRECISION)
    for source in (names.SOURCE_MEASURED, names.SOURCE_PUBLISHED):
        newest_first = runs(case=case, vendor=vendor, topology=topology, source=source, precision=precision,
                            tracking_uri=client.tracking_uri)
        newest_first = newest_first[newest_first["superseded"] != "true"]  # a superseded page version
        found = [run_id for run_id in newest_first["run_id"] if run_id != candidate.info.run_id]
        if found:
            return client.get_run(found[0])
    raise DataError(f"--against {spec}: no FINISHED measured or published run at precision {precision}")


def gate(client: Any, candidate_id: str, baseline_spec: str, default_threshold: float = DEFAULT_THRESHOLD) -> Gate:
    candidate = _run(client, candidate_id)
    baseline = resolve_baseline(client, baseline_spec, candidate)
    if baseline.info.run_id == candidate.info.run_id:
        raise DataError(f"--against {baseline_spec}: run {candidate_id} cannot be its own baseline")
    repeats = _repeats(client, baseline, candidate.info.run_id)
    base_tags = baseline.data.tags
    published = base_tags.get(names.TAG_SOURCE) == names.SOURCE_PUBLISHED
    checks = []
    for metric in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER):
        candidate_metric = counterpart(metric, mode=candidate.data.tags.get(names.TAG_MODE),
                                       other_mode=base_tags.get(names.TAG_MODE), other_published=published,
                                       other_p_whole_clock=base_tags.get(names.TAG_P_WHOLE_CLOCK))
        values = [r.data.metrics[metric] for r in repeats if metric in r.data.metrics]
        if not values or candidate_metric is None or candidate_metric not in candidate.data.metrics:
            continue
        base = statistics.median(values)
        if base == 0:
            continue
        mine = candidate.data.metrics[candidate_metric]
        change = (mine - base) / abs(base) if metric in HIGHER_IS_BETTER else (base - mine) / abs(base)
        spread = (max(values) - min(values)) / abs(base) if len(values) > 1 else None
        threshold = max(spread or 0.0, default_threshold)
        shown = metric if candidate_metric == metric else f"{metric} ({DEFINITION_LABELS[candidate_metric]})"
        checks.append(Check(shown, base, mine, change,
                            threshold, len(values), spread, change < -threshold))
    if not checks:
        raise DataError(f"run {candidate_id} and baseline {baseline.info.run_id} share no metric to compare")
    return Gate(candidate_id, [r.info.run_id for r in repeats],
                baseline.data.tags.get(names.TAG_SOURCE, "measured"), checks)
