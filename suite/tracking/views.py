"""MLflow UI saved views of the benchmark, and the URLs that open them in the UI's training layout.

MLflow 3's UI picks its layout from the URL's `workflowType` (else from the browser's last choice, GenAI by
default), not from the experiment's `mlflow.experimentKind` tag: every URL the suite prints or writes therefore
carries `workflowType=machine_learning`.

Which columns the runs table shows, how runs are grouped and which charts the chart view draws are UI state, kept
in the browser, except for saved views: an experiment tag `mlflow.sharedViewState.<key>` whose value is an envelope
`{"name", "createdAt", "updatedAt", "state"}` (`state`: the view as JSON), which the UI lists under its views menu
and opens from `?viewStateShareKey=<key>`. The suite saves one view per link it writes (a search filter; the
benchmark's columns, its identity first; one group per config; p_core, mAP and mem charts with one bar per run,
in its accelerator's colour), keyed by a hash of the view, so writing it again changes nothing. A URL holding a
search filter of its own would make the UI ignore the view, so a view's filter travels inside the view.
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
# The runs table puts metric columns before tag columns; a view's columnOrder (applied by the table as its column
# state) puts the row's identity right after its name instead, and columnWidths widens the name column so that a
# run name (suite.identity.run_name: accelerator, topology, source, case) shows whole.
RUN_NAME_COLUMN = "attributes.`Run Name`"
RUN_NAME_WIDTH_PX = 330
# Groups are accelerators as the suite names them (one per vendor config), split by everything else that makes a
# config: a group then only ever holds repeats of one config, and its average (the group row's figures) is the mean
# of repeats, never of two cases, topologies, settings, sources or page versions (the A100's two published 1x8 rows
# once made one group, and one chart bar, of p_core 248.5, a figure no page shows).
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


def ui_address(tracking_uri: str) -> str:
    """The UI's address of a tracking server: its URI without user and password (the browser asks for those)."""
    parts = urllib.parse.urlsplit(tracking_uri)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query="", fragment="")).rstrip("/")


def run_path(experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """`#/experiments/<id>/runs/<run>?workflowType=...`: a run's page, in the training layout; with `artifact`, its
    Artifacts tab with that file open (an HTML file is shown in the page, a PNG as an image)."""
    tab = f"/artifacts/{urllib.parse.quote(artifact)}" if artifact else ""
    return f"#/experiments/{experiment_id}/runs/{run_id}{tab}?{'='.join(WORKFLOW_PARAMETER)}"


@dataclass(frozen=True)
class SavedView:
    """One saved view of an experiment's runs: a search filter (empty: every run) in the benchmark's layout."""

    name: str
    search_filter: str = ""
    group_by: tuple[str, ...] = (names.TAG_CASE, *CONFIG)

    def state(self) -> dict[str, Any]:
        section = "accelbench"
        columns = [*(_column("tags", t) for t in COLUMN_TAGS), *(_column("metrics", m) for m in COLUMN_METRICS)]
        charts = [{"uuid": f"accelbench-{metric}", "type": "BAR", "metricKey": metric, "displayName": metric,
                   "metricSectionId": section, "deleted": False, "isGenerated": False} for metric in CHART_METRICS]
        return {
            "searchFilter": self.search_filter,
            "orderByKey": _column("metrics", names.P_CORE),
            "orderByAsc": False,
            "selectedColumns": columns,
            "columnOrder": [RUN_NAME_COLUMN, *columns],
            "columnWidths": {RUN_NAME_COLUMN: RUN_NAME_WIDTH_PX},
            "groupBy": {"aggregateFunction": "average",
                        "groupByKeys": [{"mode": "tag", "groupByData": tag} for tag in self.group_by]},
            "groupsExpanded": {},
            "runsHiddenMode": "SHOW_ALL",  # the UI's default charts only the first 10 runs or groups
            # Charts draw runs, not groups: a run's bar is labelled with its name and coloured by its accelerator
            # (the mlflow.runColor tag every benchmark row carries); a group's colour lives only in the browser's
            # local storage, which no saved view can set. A chart then never averages anything.
            "useGroupedValuesInCharts": False,
            "hideEmptyCharts": True,
            "compareRunCharts": charts,
            # One chart per row, taller than the UI's default (3 per row, 360 px): bars of a dozen runs and their
            # legend of run names need the width.
            "compareRunSections": [{"uuid": section, "name": "Benchmark per run, coloured by accelerator",
                                    "display": True, "isReordered": False, "columns": 1, "cardHeight": 480}],
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
    from suite.tracking.client import add_experiment_tag

    existing = client.get_experiment(experiment_id).tags
    for view in views:
        key, value = view.tag()
        if key not in existing:
            add_experiment_tag(client, experiment_id, key, value)
