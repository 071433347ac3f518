"""The Markdown description shown at the top of a run's MLflow page: what ran, its row in the published pages'
columns, and links to the runs it compares with.

Links are relative to the MLflow UI (`#/experiments/<id>/runs?searchFilter=...`), so they work on whatever host and
port the UI is served from (`accelbench ui`, a team server behind a proxy).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from suite import names
from suite.tables import markdown_table
from suite.tracking.client import tag_clause

COMPARE_HEADING = "**Compare:**"
SUMMARY_COLUMNS = (names.E2E_TIME, names.P_WHOLE, names.P_TRAIN, names.P_CORE, "mAP", names.MEM)
COLUMN_TITLES = {names.E2E_TIME: "e2e_time (s)", names.P_WHOLE: "p_whole (img/s)", names.P_TRAIN: "p_train (img/s)",
                 names.P_CORE: "p_core (img/s)", "mAP": "mAP", names.MEM: "mem (GiB)"}


def search_link(experiment_id: str, text: str, filter_string: str) -> str:
    query = urllib.parse.quote(filter_string, safe="")
    return f"[{text}](#/experiments/{experiment_id}/runs?searchFilter={query})"


def _tag(name: str, value: str) -> str:
    return tag_clause(name, value)


def comparison_links(experiment_id: str | None, case: str, topology: str) -> str:
    """Where this run's numbers sit among the others: same case and topology on every accelerator, every run of
    the case, and the comparison runs (`accelbench compare`) that include the case."""
    if not experiment_id:
        return ""
    links = [
        search_link(experiment_id, f"{case} {topology} on every accelerator (measured and published)",
                    f"{_tag(names.TAG_CASE, case)} and {_tag(names.TAG_TOPOLOGY, topology)}"),
        search_link(experiment_id, f"every {case} run", _tag(names.TAG_CASE, case)),
        search_link(experiment_id, f"comparison reports that include {case}",
                    f"{_tag(names.TAG_KIND, names.KIND_COMPARISON)} and "
                    f"{tag_clause(names.TAG_CASES, f'%{case}%').replace(' = ', ' LIKE ', 1)}"),
    ]
    return f"{COMPARE_HEADING} " + " · ".join(links) + f"  \n`accelbench compare --case {case}` writes a new report."


def with_links(description: str, experiment_id: str | None, tags: Mapping[str, str]) -> str:
    """A description written offline (no experiment id then) with its links added, once the run reaches a store."""
    case, topology = tags.get(names.TAG_CASE), tags.get(names.TAG_TOPOLOGY)
    if COMPARE_HEADING in description or not (experiment_id and case and topology):
        return description
    return f"{description}\n\n{comparison_links(experiment_id, case, topology)}"


def measured_description(*, row: Mapping[str, str], what: Mapping[str, str], experiment_id: str | None,
                         failure: str | None = None) -> str:
    """A measured run's description: `row` is suite.tracking.rows's row (the published pages' columns), `what`
    the facts of the run (case, accelerator, topology, precision, fix_hp, ...)."""
    facts = " · ".join(f"{key} **{value}**" for key, value in what.items() if value)
    parts = [facts, "", markdown_table([row], SUMMARY_COLUMNS, COLUMN_TITLES)]
    if failure:
        parts += ["", f"**{row.get('status', 'FAILED')}:** {failure}"]
    links = comparison_links(experiment_id, row["case"], row["topology"])
    if links:
        parts += ["", links]
    return "\n".join(parts)
