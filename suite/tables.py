"""Tables as text: aligned plain-text columns for the terminal, and GitHub-flavoured Markdown for reports and run
pages (MLflow renders Markdown in run descriptions). The one place either format is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SEPARATOR = "  "
MIN_CUT_WIDTH = 8  # a column cut to fit is never narrower than this


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str], max_width: int | None = None,
                 cuttable: Sequence[str] | None = None, titles: Mapping[str, str] | None = None) -> str:
    """Left-aligned columns under a header and a rule of dashes.

    With `max_width`, the widest of the `cuttable` columns (default: any) is cut, its cells ending in "…", until
    the lines fit or every such column is down to MIN_CUT_WIDTH: a terminal shows each row whole on one line.
    """
    titles = titles or {}
    widths = {c: max([len(titles.get(c, c))] + [len(r.get(c, "")) for r in rows]) for c in columns}
    candidates = [c for c in (cuttable or columns) if c in widths]
    if max_width is not None and candidates:
        while sum(widths.values()) + len(SEPARATOR) * (len(columns) - 1) > max_width:
            widest = max(candidates, key=lambda c: widths[c])
            if widths[widest] <= MIN_CUT_WIDTH:
                break
            widths[widest] -= 1
    line = SEPARATOR.join(f"{_cut(titles.get(c, c), widths[c]):<{widths[c]}}" for c in columns)
    rule = SEPARATOR.join("-" * widths[c] for c in columns)
    body = [SEPARATOR.join(f"{_cut(r.get(c, ''), widths[c]):<{widths[c]}}" for c in columns) for r in rows]
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
