"""The Markdown description shown at the top of a run's MLflow page: what ran, its row in the published pages'
columns, and links to the runs it compares with.

Links are relative to the MLflow UI (`#/experiments/<id>/runs?viewStateShareKey=...&workflowType=machine_learning`),
so they work on whatever host and port the UI is served from (`accelbench ui`, a team server behind a proxy); each
opens a saved view (`suite.tracking.views`) holding its search filter and the benchmark's columns and charts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from suite import names
from suite.tables import markdown_table
from suite.tracking.client import tag_clause
from suite.tracking.views import CONFIG, SavedView, current_rows, save_views

COMPARE_HEADING = "**Compare:**"
SUMMARY_COLUMNS = (names.E2E_TIME, names.P_WHOLE, names.P_TRAIN, names.P_CORE, "mAP", names.MEM_SMI, names.MEM)
COLUMN_TITLES = {names.E2E_TIME: "e2e_time (s)", names.P_WHOLE: "p_whole (img/s)", names.P_TRAIN: "p_train (img/s)",
                 names.P_CORE: "p_core (img/s)", "mAP": "mAP", names.MEM_SMI: "mem_smi (GiB, tool used/total)",
                 names.MEM: "mem (GiB, allocator peak)"}


def search_link(experiment_id: str, text: str, filter_string: str, group_by: tuple[str, ...] = ()) -> str:
    """A Markdown link to the runs `filter_string` matches, in the benchmark's saved view (`link_view` saves it)."""
    return f"[{text}]({link_view(text, filter_string, group_by).path(experiment_id)})"


def link_view(text: str, filter_string: str, group_by: tuple[str, ...] = ()) -> SavedView:
    """The saved view of a link: one group per config (`suite.tracking.views.CONFIG`), and per `group_by` (what
    the filter leaves open beyond a config, such as the case)."""
    return SavedView(f"accelbench: {text}", filter_string, (*group_by, *(k for k in CONFIG if k not in group_by)))


def _comparison_searches(case: str, topology: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(link text, filter, further grouping) of each link a run's page gives: same case and topology on every
    accelerator, every run of the case, and the comparison runs (`accelbench compare`) that include the case."""
    return [
        (f"{case} {topology} on every accelerator (measured and published)",
         current_rows(f"{tag_clause(names.TAG_CASE, case)} and {tag_clause(names.TAG_TOPOLOGY, topology)}"), ()),
        (f"every {case} run", current_rows(tag_clause(names.TAG_CASE, case)), (names.TAG_TOPOLOGY,)),
        (f"comparison reports that include {case}",
         f"{tag_clause(names.TAG_KIND, names.KIND_COMPARISON)} and "
         f"{tag_clause(names.TAG_CASES, f'%{case}%').replace(' = ', ' LIKE ', 1)}", ()),
    ]


def comparison_views(case: str, topology: str) -> list[SavedView]:
    """The saved views `comparison_links` points to: save them (`suite.tracking.views.save_views`) with the run."""
    return [link_view(*search) for search in _comparison_searches(case, topology)]


def comparison_links(experiment_id: str | None, case: str, topology: str) -> str:
    """Where this run's numbers sit among the others (`_comparison_searches`), as a line of links."""
    if not experiment_id:
        return ""
    links = [search_link(experiment_id, *search) for search in _comparison_searches(case, topology)]
    return f"{COMPARE_HEADING} " + " · ".join(links) + f"  \n`accelbench compare --case {case}` writes a new report."


def save_link_views(client: Any, experiment_id: str, tags: Mapping[str, str]) -> None:
    """Save the views a run's links open, once the run (with its case and topology tags) is in a store."""
    case, topology = tags.get(names.TAG_CASE), tags.get(names.TAG_TOPOLOGY)
    if case and topology:
        save_views(client, experiment_id, comparison_views(case, topology))


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
