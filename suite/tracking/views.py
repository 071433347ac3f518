"""MLflow UI saved views of the benchmark, and the URLs that open them in the UI's training layout.

MLflow 3's UI picks its layout from the URL's `workflowType` (else from the browser's last choice, GenAI by
default), not from the experiment's `mlflow.experimentKind` tag: every URL the suite prints or writes therefore
carries `workflowType=machine_learning`.

Which columns the runs table shows, how runs are grouped and which charts the chart view draws are UI state, kept
in the browser, except for saved views: an experiment tag `mlflow.sharedViewState.<key>` whose value is an envelope
`{"name", "createdAt", "updatedAt", "state"}` (`state`: the view as JSON), which the UI lists under its views menu
and opens from `?viewStateShareKey=<key>`. The suite saves one view per link it writes (a search filter with the
benchmark's columns, one group per config, with p_core, mAP and mem charts per config), keyed by a hash of
the view, so writing it again changes nothing. A URL holding a search filter of its own would make the UI ignore the
view, so a view's filter travels inside the view.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from suite import names

WORKFLOW_PARAMETER = ("workflowType", "machine_learning")
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY_PARAMETER = "viewStateShareKey"
VIEW_FORMAT = 1  # part of each view's key: a changed layout saves new views instead of rewriting old ones

# The published pages' columns, in their order: what a reader compares first.
COLUMN_TAGS = (names.TAG_CASE, names.TAG_VENDOR, names.TAG_ACCELERATOR, names.TAG_TOPOLOGY, names.TAG_PRECISION,
               names.TAG_FIX_HP, names.TAG_SOURCE, names.TAG_PAGE_VERSION, names.TAG_MODE)
# mem_smi is the device tool's reading, what the published pages print; mem is the allocator's peak (measured only).
COLUMN_METRICS = (names.P_CORE, names.P_TRAIN, names.P_WHOLE, names.E2E_TIME, names.MAP, names.MAP_SEGM,
                  names.MEM_SMI, names.MEM)
CHART_METRICS = (names.P_CORE, names.MAP, names.MEM_SMI)
# Groups are accelerators as the suite names them (one per vendor config), split by everything else that makes a
# config: a group then only ever holds repeats of one config, and its average (what its chart bars show) is the mean
# of repeats, never of two cases, topologies, settings, sources or page versions (the A100's two published 1x8 rows
# once made one bar of p_core 248.5, a figure no page shows).
ACCELERATOR = names.TAG_VENDOR
CONFIG = (ACCELERATOR, names.TAG_TOPOLOGY, names.TAG_PRECISION, names.TAG_FIX_HP, names.TAG_SOURCE,
          names.TAG_PAGE_VERSION)
# Benchmark rows of the newest page versions and every measured run (older page versions are tagged superseded).
CURRENT_ROWS = f"tags.`{names.TAG_SUPERSEDED}` = 'false'"


def current_rows(search_filter: str) -> str:
    """`search_filter` narrowed to CURRENT_ROWS (runs recorded before the tag existed lack it, so they drop out)."""
    return f"{search_filter} and {CURRENT_ROWS}" if search_filter else CURRENT_ROWS


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"  # the UI's column key (its canonical sort key)


def runs_path(experiment_id: str, **parameters: str) -> str:
    """`#/experiments/<id>/runs?...`: relative to the UI's address, in the training layout."""
    query = urllib.parse.urlencode({**parameters, WORKFLOW_PARAMETER[0]: WORKFLOW_PARAMETER[1]},
                                   quote_via=urllib.parse.quote)
    return f"#/experiments/{experiment_id}/runs?{query}"


@dataclass(frozen=True)
class SavedView:
    """One saved view of an experiment's runs: a search filter (empty: every run) in the benchmark's layout."""

    name: str
    search_filter: str = ""
    group_by: tuple[str, ...] = (names.TAG_CASE, *CONFIG)

    def state(self) -> dict[str, Any]:
        section = "accelbench"
        charts = [{"uuid": f"accelbench-{metric}", "type": "BAR", "metricKey": metric, "displayName": metric,
                   "metricSectionId": section, "deleted": False, "isGenerated": False} for metric in CHART_METRICS]
        return {
            "searchFilter": self.search_filter,
            "orderByKey": _column("metrics", names.P_CORE),
            "orderByAsc": False,
            "selectedColumns": [*(_column("tags", t) for t in COLUMN_TAGS),
                                *(_column("metrics", m) for m in COLUMN_METRICS)],
            "groupBy": {"aggregateFunction": "average",
                        "groupByKeys": [{"mode": "tag", "groupByData": tag} for tag in self.group_by]},
            "groupsExpanded": {},
            "runsHiddenMode": "SHOW_ALL",  # the UI's default charts only the first 10 runs or groups
            "useGroupedValuesInCharts": True,
            "hideEmptyCharts": True,
            "compareRunCharts": charts,
            "compareRunSections": [{"uuid": section, "name": "Benchmark per accelerator", "display": True,
                                    "isReordered": False}],
            "isAccordionReordered": False,
        }

    @property
    def key(self) -> str:
        text = json.dumps([VIEW_FORMAT, self.name, self.state()], sort_keys=True)
        return "accelbench-" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def tag(self, now_ms: int | None = None) -> tuple[str, str]:
        """(experiment tag key, value): the envelope the UI's views menu reads."""
        created = int(time.time() * 1000) if now_ms is None else now_ms
        envelope = {"name": self.name, "createdAt": created, "updatedAt": created,
                    "state": json.dumps(self.state(), separators=(",", ":"))}
        return VIEW_TAG_PREFIX + self.key, json.dumps(envelope, separators=(",", ":"))

    def path(self, experiment_id: str, *, charts: bool = False) -> str:
        """The URL fragment that opens this view (its chart view with `charts`)."""
        parameters = {VIEW_KEY_PARAMETER: self.key}
        if charts:
            parameters["compareRunsMode"] = "CHART"
        return runs_path(experiment_id, **parameters)


EVERY_RUN = SavedView("accelbench: every benchmark row, one group per case and config", CURRENT_ROWS)


def case_view(case: str) -> SavedView:
    """Every row of one case, one group (one bar in the charts) per config: accelerator, topology, precision,
    settings, source and page version."""
    from suite.tracking.client import tag_clause

    return SavedView(f"accelbench: {case}, one group per accelerator and config",
                     current_rows(tag_clause(names.TAG_CASE, case)), CONFIG)


def save_views(client: Any, experiment_id: str, views: Iterable[SavedView]) -> None:
    """Save each view on the experiment unless it is there already (its key names its content)."""
    existing = client.get_experiment(experiment_id).tags
    for view in views:
        key, value = view.tag()
        if key not in existing:
            client.set_experiment_tag(experiment_id, key, value)
