"""The regression gate behind `accelbench check RUN_ID --against BASELINE`.

The baseline is a run id, several run ids, or `vendor/case/topology`: the newest FINISHED measured run of that
vendor, case and topology at the candidate's precision, else its published row. Its value for each metric is the
median over its runs. By default one named run stands for its repeats: the FINISHED runs with its config hash,
vendor, case and topology are pooled (never the candidate itself: a candidate of the same config, the gate's whole
use, would otherwise widen its own noise band until it always passes), and the output names every pooled run.
`exact` (`--exact`, or several ids) takes exactly the runs named.

The noise threshold is the relative spread of the baseline's runs ((max - min) / median), but never less than the
default (5%, `--threshold`), so identical repeats do not make a 0.1% wobble a regression, and never more than the cap
(25%, `--max-threshold`): a baseline noisier than the cap cannot tell a regression from noise, and that metric's
verdict says so ("baseline too noisy to judge", exit code 3) instead of passing anything. A metric worse than the
baseline by more than the threshold is a regression (exit code 1). Each metric is compared on the baseline's
definition (suite.results.definitions): against a published baseline the candidate's p_core_unsynced stands in for
its p_core (host clock), and its p_whole_with_init for p_whole where the page's clock starts at the run's start;
p_whole and e2e_time are not compared between runs of different modes (a throughput-mode candidate against an
epoch run). mAP and map_segm are compared when both sides have them (a throughput run has none).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from suite import names
from suite.errors import DataError, UnknownNameError
from suite.results.definitions import counterpart
from suite.results.query import runs
from suite.results.scaling import relative_spread
from suite.tracking.client import tag_clause

DEFAULT_THRESHOLD = 0.05
MAX_THRESHOLD = 0.25  # above this the baseline's own runs disagree by more than most regressions worth catching
HIGHER_IS_BETTER = (names.P_WHOLE, names.P_TRAIN, names.P_CORE, names.MAP, names.MAP_SEGM, names.MFU)
LOWER_IS_BETTER = (names.E2E_TIME, names.ENERGY_PER_IMAGE, names.MEM, names.MEM_SMI)
DEFINITION_LABELS = {names.P_CORE_UNSYNCED: "host clock", names.P_WHOLE_WITH_INIT: "clock from the run's start"}


REGRESSION = "REGRESSION"
TOO_NOISY = "baseline too noisy to judge"


@dataclass
class Check:
    metric: str
    baseline: float
    candidate: float
    change: float       # relative, positive = better
    threshold: float    # the threshold used: the spread, within [default, cap]
    repeats: int        # baseline runs with this metric, whose spread the threshold came from
    spread: float | None  # their relative spread (None with one run)
    cap: float = MAX_THRESHOLD

    @property
    def too_noisy(self) -> bool:
        return self.spread is not None and self.spread > self.cap

    @property
    def regression(self) -> bool:
        return not self.too_noisy and self.change < -self.threshold

    @property
    def direction(self) -> str:
        """The change in words: which way the candidate moved, whatever the sign convention of the metric."""
        if self.change > 0:
            return "better"
        return "worse" if self.change < 0 else "same"

    @property
    def verdict(self) -> str:
        if self.too_noisy:
            return TOO_NOISY
        if self.regression:
            return REGRESSION
        return "improved" if self.change > self.threshold else "ok (within noise)"

    @property
    def threshold_from(self) -> str:
        """Where the threshold came from, for the printed table."""
        if self.spread is None:
            return "default (1 baseline run)"
        if self.too_noisy:
            return f"spread {100 * self.spread:.1f}% of {self.repeats} runs is over the {100 * self.cap:.0f}% cap"
        if self.spread >= self.threshold:
            return f"spread of {self.repeats} runs"
        return f"default ({self.repeats} runs, spread {100 * self.spread:.1f}%)"


@dataclass
class Gate:
    candidate_id: str
    baseline_ids: list[str]
    baseline_source: str
    checks: list[Check]
    pooled_by: str | None = None  # the config hash the baseline's runs were pooled by; None: exactly the runs named

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regression]

    @property
    def too_noisy(self) -> list[Check]:
        return [c for c in self.checks if c.too_noisy]

    def baseline_line(self) -> str:
        """Which runs the baseline's values are medians over, and why those."""
        ids = ", ".join(self.baseline_ids)
        count = len(self.baseline_ids)
        if self.pooled_by:
            how = (f"{count} run(s) pooled: every FINISHED run with the named run's config hash {self.pooled_by}, "
                   f"vendor, case and topology (--exact takes only the runs named)")
        else:
            how = f"exactly the {count} run(s) named"
        return f"candidate {self.candidate_id} against {self.baseline_source} baseline {ids} ({how})"


def _run(client: Any, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise DataError(f"no run {run_id!r} in {client.tracking_uri}") from None


def _repeats(client: Any, run: Any, candidate_id: str) -> tuple[list[Any], str | None]:
    """FINISHED runs with the same config hash, vendor, case and topology as `run` (the run itself if it has no
    hash), leaving out the candidate; and the hash they were pooled by."""
    tags = run.data.tags
    config_hash = tags.get(names.TAG_CONFIG_HASH)
    if not config_hash:
        return [run], None
    same = [tag_clause(t, tags[t]) for t in (names.TAG_CONFIG_HASH, names.TAG_VENDOR, names.TAG_CASE,
                                             names.TAG_TOPOLOGY) if t in tags]
    query = " AND ".join([*same, "attributes.status = 'FINISHED'"])
    found = client.search_runs([run.info.experiment_id], query, max_results=1000)
    return [r for r in found if r.info.run_id != candidate_id] or [run], config_hash


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


def gate(client: Any, candidate_id: str, baseline_spec: str, default_threshold: float = DEFAULT_THRESHOLD, *,
         exact: bool = False, max_threshold: float = MAX_THRESHOLD) -> Gate:
    """Compare the candidate with the baseline `baseline_spec` (a run id, comma-separated run ids, or
    vendor/case/NxM); see the module's docstring for the rules."""
    if max_threshold < default_threshold:
        raise DataError(f"--max-threshold {max_threshold:g} is below --threshold {default_threshold:g}")
    candidate = _run(client, candidate_id)
    specs = [spec.strip() for spec in baseline_spec.split(",") if spec.strip()]
    if not specs:
        raise DataError("--against: no baseline named")
    if len(specs) > 1 and any(spec.count("/") == 2 for spec in specs):
        raise DataError(f"--against {baseline_spec}: several baselines must all be run ids")
    named = [resolve_baseline(client, spec, candidate) for spec in specs]
    if any(run.info.run_id == candidate.info.run_id for run in named):
        raise DataError(f"--against {baseline_spec}: run {candidate_id} cannot be its own baseline")
    pooled_by = None
    if exact or len(named) > 1:
        repeats = list({run.info.run_id: run for run in named}.values())
    else:
        repeats, pooled_by = _repeats(client, named[0], candidate.info.run_id)
    base_tags = named[0].data.tags
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
            continue  # no relative change from zero (mAP on synthetic smoke data)
        mine = candidate.data.metrics[candidate_metric]
        change = (mine - base) / abs(base) if metric in HIGHER_IS_BETTER else (base - mine) / abs(base)
        spread = relative_spread(values)
        threshold = min(max(spread or 0.0, default_threshold), max_threshold)
        shown = metric if candidate_metric == metric else f"{metric} ({DEFINITION_LABELS[candidate_metric]})"
        checks.append(Check(shown, base, mine, change, threshold, len(values), spread, max_threshold))
    if not checks:
        raise DataError(f"run {candidate_id} and baseline {named[0].info.run_id} share no metric to compare")
    return Gate(candidate_id, [r.info.run_id for r in repeats], base_tags.get(names.TAG_SOURCE, "measured"),
                checks, pooled_by)
