"""Tables as text: aligned plain-text columns for the terminal, and GitHub-flavoured Markdown for reports and run
pages (MLflow renders Markdown in run descriptions). The one place either format is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def render_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """Left-aligned columns under a header and a rule of dashes."""
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in columns}
    line = "  ".join(f"{c:<{widths[c]}}" for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(f"{r.get(c, ''):<{widths[c]}}" for c in columns) for r in rows]
    return "\n".join([line, rule, *body])


def markdown_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str],
                   titles: Mapping[str, str] | None = None) -> str:
    """A Markdown table; `titles` renames column headers. Pipes and line breaks in cells are escaped."""
    titles = titles or {}

    def cell(text: str) -> str:
        return (text or " ").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(titles.get(c, c)) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
