"""Render a `suite.results.query.Comparison` as the published pages show results, and record it as a comparison run.

Outputs (all written to one folder and logged as artifacts of a run tagged `bench.kind=comparison`):
    comparison.md              a section per case: the results table, notes, scaling table
    comparison.csv             every column of the comparison table (medians, min, max, spread, ratios)
    comparison.html            self-contained (inline CSS, charts embedded), opens from disk or the MLflow UI
    throughput_<case>.png      p_core per accelerator and topology
    map_<case>.png             final mAP per accelerator and topology (the C500 and R300 pages publish only mAP
    mem_<case>.png             and mem: these put them in the pictures too); memory in GiB
    scaling_<case>.png         p_core and p_train against devices, each series with its linear-scaling line
    map_curves_<case>.png      mAP per epoch of measured runs, published final mAPs as dashed lines

Every chart gives an accelerator one colour and a source/settings one hatch or marker (`series_styles`), the same
in every chart of every report.
"""

from __future__ import annotations

import base64
import html
import math
import textwrap
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from suite import names
from suite.colors import accelerator_color
from suite.results.comparison import Comparison
from suite.results.definitions import NOT_COMPARABLE_ACROSS_MODES
from suite.results.query import map_history
from suite.results.scaling import THROUGHPUTS
from suite.tables import markdown_table, render_table
from suite.tracking.client import tag_clause

MAX_CURVE_RUNS = 40  # per case: the newest convergence/smoke runs get an mAP curve
DESCRIPTION_LIMIT = 7000  # MLflow tag values hold 8000 characters; the rest is for the links


def format_number(value: Any) -> str:
    """Four significant digits, never scientific, trailing zeros dropped: 14086, 144.3, 45.26, 0.3529."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if value == 0:
        return "0"
    digits = math.floor(math.log10(abs(value))) + 1
    text = f"{value:.{max(0, 4 - digits)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _text(value: Any, default: str = "") -> str:
    """A text cell; pandas may hand back NaN for a missing string."""
    return value if isinstance(value, str) and value else default


def display_rows(table: pd.DataFrame, baseline: str) -> list[dict[str, str]]:
    """The comparison table's rows as text cells, in the published pages' columns."""
    rows = []
    for r in table.to_dict("records"):
        precision = r["precision"]
        if _text(r.get("precision_published"), precision) != precision:
            precision = f"{precision} (page: {r['precision_published']})"
        mean_ap = " && ".join(format_number(r[m]) for m in (names.MAP, names.MAP_SEGM) if _present(r[m]))
        mem_smi = ""  # the vendor tool's reading, as the pages print it; never the allocator's figure
        if _present(r[names.MEM_SMI]):
            mem_smi = f"{r[names.MEM_SMI]:.1f}" + (f"/{r[names.MEM_TOTAL]:.1f}" if _present(r[names.MEM_TOTAL])
                                                    else "")
        spread = r[f"{names.P_CORE}_spread"]
        rows.append({
            "source": r["source"],
            "vendor": r["vendor"],
            "topology": r["topology"],
            "precision": precision,
            "precision_run": r["precision"],
            "fix_hp": _text(r["fix_hp"], "/"),
            "page": _text(r.get("page_version")),
            "mode": _text(r["mode"]),
            "n": str(r["n"]),
            names.E2E_TIME: format_number(r[names.E2E_TIME]),
            names.P_WHOLE: format_number(r[names.P_WHOLE]),
            names.P_TRAIN: format_number(r[names.P_TRAIN]),
            names.P_CORE: format_number(r[names.P_CORE]),
            "timing": "host" if r["p_core_timing"] == "host clock" else "sync",
            "p_core_host": format_number(r[names.P_CORE_UNSYNCED]),
            "spread": f"±{100 * spread / 2:.1f}%" if r["n"] > 1 and _present(spread) else "",
            "mAP": mean_ap,
            "target": {True: "met", False: "MISSED"}.get(r.get("target_met"), ""),
            MEM_SMI_COLUMN: mem_smi,
            MEM_ALLOC_COLUMN: f"{r[names.MEM]:.1f}" if _present(r[names.MEM]) else "",
            f"vs {baseline}": (f"{r[f'{names.P_CORE}_vs_baseline']:.2f}x"
                               if _present(r[f"{names.P_CORE}_vs_baseline"]) else ""),
            "scaling": f"{r['scaling']:.2f}" if _present(r["scaling"]) else "",
        })
    return rows


MEM_SMI_COLUMN = "mem_smi"  # the vendor tool's used/total device memory: the published pages' `mem` cell
MEM_ALLOC_COLUMN = "mem_alloc"  # the allocator's peak (measured rows)


def display_columns(baseline: str) -> tuple[str, ...]:
    return ("source", "vendor", "topology", "precision", "fix_hp", "page", "mode", "n", names.E2E_TIME,
            names.P_WHOLE, names.P_TRAIN, names.P_CORE, "timing", "p_core_host", "spread", "mAP", "target",
            MEM_SMI_COLUMN, MEM_ALLOC_COLUMN, f"vs {baseline}", "scaling")


SCALING_COLUMNS = ("source", "vendor", "precision", "bs", "topology", "reference", *THROUGHPUTS, "flag")


def _scaling_rows(scaling: pd.DataFrame) -> list[dict[str, str]]:
    return [{"source": r["source"], "vendor": r["vendor"], "precision": r["precision"],
             "bs": str(r["bs"]) if _present(r["bs"]) else "",
             "topology": r["topology"], "reference": r["reference"],
             **{m: f"{r[m]:.3f}" if _present(r[m]) else "" for m in THROUGHPUTS},
             "flag": "IMPLAUSIBLE (see notes)" if _text(r.get("implausible")) else ""}
            for r in scaling.to_dict("records")]


# What a results page may publish per row, and how a note names what it left out.
PAGE_FIGURES = ((names.P_CORE, "p_core"), (names.P_WHOLE, "p_whole"), (names.MAP, "mAP"),
                (names.MEM_SMI, "memory"))


def _notes(table: pd.DataFrame) -> list[str]:
    """What a reader must know about a row to compare it: a figure that cannot be trusted as it stands (any row),
    the published rows' notes, and for measured rows a throughput mode, a config no publisher file backs, ops run
    on the host CPU."""
    notes = []
    for r in table.to_dict("records"):
        where = f"{r['vendor']} {r['topology']} {_text(r['fix_hp'], '/')}"
        if _text(r.get("implausible")):
            notes.append(f"IMPLAUSIBLE {where} ({r['source']}): {r['implausible']}")
        if r["source"] == names.SOURCE_PUBLISHED:
            unpublished = [title for metric, title in PAGE_FIGURES if not _present(r.get(metric))]
            if unpublished:  # said once, instead of empty cells and missing bars with no word why
                notes.append(f"{where} (published, page {_text(r.get('page_version'), 'seed')}): the page publishes "
                             f"no {', '.join(unpublished)}")
            if _text(r.get("published_note")):
                page = f", page {r['page_version']}" if _text(r.get("page_version")) else ""
                notes.append(f"{where} (published{page}): {r['published_note']}")
            continue
        said = []
        if r["mode"] == "throughput":
            said.append(NOT_COMPARABLE_ACROSS_MODES)
        if r.get("reproduces") == names.REPRODUCES_NONE:
            said.append("the suite's own config: no publisher file backs it")
        if _text(r.get("cpu_fallback_ops")):
            said.append(f"ran {r['cpu_fallback_ops']} on the host CPU")
        if said:
            notes.append(f"{where} (measured, {r['mode']}): {'; '.join(said)}")
    return notes


LEGEND = ("`timing` says how a row's p_core was timed: `sync` (measured rows: a device synchronize at both window "
          "edges) or `host` (the published pages: a host clock stopped when optimizer.step() returns, which bills "
          "queued device work to data loading). `p_core_host` is a measured row's p_core on the published "
          "definition. `mem_smi` is the device memory the vendor's tool reported used/total (what the pages "
          "print); `mem_alloc` the allocator's peak, a smaller quantity, measured rows only. `page` is the version "
          "of a published row's page (`seed` or the publisher's commit). Throughput-mode rows' p_whole and e2e_time "
          "are not compared with epoch runs'. `spread` is half the min-max range of p_core over the `n` repeats; "
          "`vs` is the p_core ratio to the baseline accelerator at the same case, topology and precision, taken on "
          "the host-clock definition when the two rows were timed differently; `target` says whether a convergence "
          "row reached every mAP target of its case; "
          "`scaling` is p(1xN)/(N p(1x1)) within a node and p(2xN)/(2 p(1xN)) across nodes.")


TERMINAL_WIDTH = 120


def terminal_columns(baseline: str) -> tuple[str, ...]:
    """What a reader compares first, in a width a terminal holds (`--wide` and the files keep every column)."""
    return ("source", "vendor", "topology", "precision", "fix_hp", names.P_CORE, "timing", f"vs {baseline}", "mAP",
            MEM_SMI_COLUMN, MEM_ALLOC_COLUMN, "n")


def terminal_report(comparison: Comparison, *, wide: bool = False) -> str:
    """The comparison as text: within TERMINAL_WIDTH characters, or every column with `wide`."""
    parts = []
    columns = display_columns(comparison.baseline) if wide else terminal_columns(comparison.baseline)
    ratio = f"vs {comparison.baseline}"
    for case, table in comparison.table.groupby("case", sort=False):
        parts.append(f"== {case} ==")
        rows = display_rows(table, comparison.baseline)
        if wide:
            parts.append(render_table(rows, columns))
        else:
            relabelled = any(r["precision"] != r["precision_run"] for r in rows)
            for r in rows:  # the page's own label moves to a footnote
                r["precision"] = r["precision_run"] + ("*" if r["precision"] != r["precision_run"] else "")
            parts.append(render_table(rows, columns, max_width=TERMINAL_WIDTH, cuttable=("fix_hp",),
                                      titles={ratio: "vs base"}))
            parts.append(f"  vs base: p_core ratio to {comparison.baseline}"
                         + ("; precision*: the published page labels it otherwise (--wide shows how)"
                            if relabelled else ""))
        for note in _notes(table):
            text = f"  note: {note}"
            parts.append(text if wide else textwrap.fill(text, TERMINAL_WIDTH, subsequent_indent="    "))
        scaling = comparison.scaling[comparison.scaling["case"] == case]
        if len(scaling):
            parts.append("scaling efficiency:")
            parts.append(render_table(_scaling_rows(scaling), SCALING_COLUMNS))
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def markdown_report(comparison: Comparison) -> str:
    parts = ["# Comparison", "", f"Baseline: **{comparison.baseline}**. {LEGEND}", ""]
    columns = display_columns(comparison.baseline)
    for case, table in comparison.table.groupby("case", sort=False):
        parts += [f"## {case}", "", markdown_table(display_rows(table, comparison.baseline), columns), ""]
        parts += [f"- {note}" for note in _notes(table)]
        scaling = comparison.scaling[comparison.scaling["case"] == case]
        if len(scaling):
            parts += ["", "Scaling efficiency:", "", markdown_table(_scaling_rows(scaling), SCALING_COLUMNS)]
        parts.append("")
    return "\n".join(parts)


# --- charts -------------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, ax: Any, title: str, path: Path) -> Path:
    ax.set_title(title)
    return _write_figure(fig, ax, path)


def _write_figure(fig: Any, legend_ax: Any, path: Path) -> Path:
    """`legend_ax`'s legend beside the plot (never over a bar or a line), then the figure as a PNG at `path`."""
    if legend_ax.get_legend_handles_labels()[0]:
        legend_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _series_label(r: dict[str, Any]) -> str:
    return f"{r['vendor']} {r['precision']} {_text(r['fix_hp'], '/')} ({r['source']})"


# One colour per accelerator (vendor config) and one hatch/marker per source and settings, the same in every chart
# of every report (suite.colors: the MLflow UI's charts use the same colours).
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "++", "--")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class SeriesStyle:
    color: str
    hatch: str
    marker: str


def series_styles(table: pd.DataFrame) -> dict[str, SeriesStyle]:
    """{series label: style} for every row of the comparison: colour from the vendor, hatch and marker from the
    source and settings (published rows first), so one config looks the same in every chart."""
    def variant(r: dict[str, Any]) -> tuple[bool, str, str]:
        return r["source"] != names.SOURCE_PUBLISHED, r["precision"], _text(r["fix_hp"], "/")

    rows = table.to_dict("records")
    variants = sorted({variant(r) for r in rows})
    styles = {}
    for r in rows:
        index = variants.index(variant(r))
        styles[_series_label(r)] = SeriesStyle(accelerator_color(r["vendor"]), HATCHES[index % len(HATCHES)],
                                               MARKERS[index % len(MARKERS)])
    return styles


BAR_CHARTS = (  # (file prefix, metric, axis label): what the published pages report per accelerator
    ("throughput", names.P_CORE, "p_core (images/s)"),
    ("map", names.MAP, "mAP (bbox AP@[.50:.95])"),
    ("mem", names.MEM_SMI, "device memory used, vendor tool (GiB)"),
)


def bar_chart(table: pd.DataFrame, case: str, metric: str, label: str, path: Path,
              styles: dict[str, SeriesStyle] | None = None) -> Path | None:
    """Grouped bars: `metric` per topology, one bar per accelerator/settings/source (None when no row has it)."""
    rows = [r for r in table.to_dict("records") if _present(r[metric])]
    if not rows:
        return None
    styles = styles or series_styles(table)
    from suite.topology import parse_topology

    plt = _pyplot()

    topologies = sorted({r["topology"] for r in rows}, key=parse_topology)
    series: dict[str, dict[str, float]] = {}
    for r in rows:
        series.setdefault(_series_label(r), {})[r["topology"]] = r[metric]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(topologies) + 2), 4.2))
    for index, (series_label, values) in enumerate(series.items()):
        xs = [i + (index - (len(series) - 1) / 2) * width for i, t in enumerate(topologies) if t in values]
        ys = [values[t] for t in topologies if t in values]
        style = styles[series_label]
        bars = ax.bar(xs, ys, width=width, label=series_label, color=style.color, hatch=style.hatch,
                      edgecolor="white" if not style.hatch else "black", linewidth=0.5)
        ax.bar_label(bars, labels=[format_number(y) for y in ys], fontsize=7)
    ax.set_xticks(range(len(topologies)), topologies)
    ax.set_ylabel(label)
    return _save(fig, ax, f"{case}: {metric} per accelerator and topology", path)


def scaling_chart(table: pd.DataFrame, case: str, path: Path,
                  styles: dict[str, SeriesStyle] | None = None) -> Path | None:
    """p_core and p_train against the number of devices (1x1 -> 1xM -> NxM), one line per accelerator, settings and
    source, each with its ideal linear line from its smallest topology; None when no series has two topologies."""
    from suite.topology import parse_topology

    series: dict[str, dict[str, dict[int, float]]] = {}
    for r in table.to_dict("records"):
        for metric in (names.P_CORE, names.P_TRAIN):
            if _present(r[metric]):
                series.setdefault(metric, {}).setdefault(_series_label(r), {})[
                    parse_topology(r["topology"]).world_size] = r[metric]
    drawn = {m: {k: v for k, v in s.items() if len(v) > 1} for m, s in series.items()}
    drawn = {m: s for m, s in drawn.items() if s}
    if not drawn:
        return None
    styles = styles or series_styles(table)
    fig, axes = _pyplot().subplots(1, len(drawn), figsize=(6.2 * len(drawn), 4.4), squeeze=False)
    devices = sorted({d for s in drawn.values() for points in s.values() for d in points})
    for ax, (metric, lines) in zip(axes[0], drawn.items(), strict=True):
        for label, points in lines.items():
            style = styles[label]
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker=style.marker, color=style.color, label=label)
            ideal = [points[xs[0]] * x / xs[0] for x in xs]
            ax.plot(xs, ideal, linestyle=":", color=style.color, linewidth=1)
            for x in xs:
                ax.annotate(format_number(points[x]), (x, points[x]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(devices, [str(d) for d in devices])
        ax.set_xlabel("devices (nodes x devices per node)")
        ax.set_ylabel(f"{metric} (images/s)")
        ax.set_title(f"{metric}; dotted: linear scaling from the smallest topology", fontsize=9)
    fig.suptitle(f"{case}: throughput against devices")
    return _write_figure(fig, axes[0][-1], path)


def map_chart(table: pd.DataFrame, history: pd.DataFrame, runs: pd.DataFrame, case: str, path: Path) -> Path | None:
    """mAP per epoch of measured runs; published final mAPs as dashed horizontal lines."""
    published = [r for r in table.to_dict("records")
                 if r["source"] == names.SOURCE_PUBLISHED and _present(r[names.MAP])]
    if history.empty and not published:
        return None
    fig, ax = _pyplot().subplots(figsize=(7, 4.2))
    info = runs.set_index("run_id")
    for (run_id, metric), points in history.groupby(["run_id", "metric"], sort=False):
        r = info.loc[run_id]
        style = "-" if metric == names.MAP else "--"
        ax.plot(points["epoch"], points["value"], style, marker="o", markersize=3,
                color=accelerator_color(r["vendor"]), label=f"{r['vendor']} {r['topology']} r{r['round']} {metric}")
    for r in published:  # a final value without its epochs: a level to reach, not a curve
        label = (f"{r['vendor']} {r['topology']} {_text(r['fix_hp'], '/')} published final "
                 f"{format_number(r[names.MAP])}")
        ax.axhline(r[names.MAP], linestyle=":", linewidth=1.2, label=label, color=accelerator_color(r["vendor"]))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    last_epoch = int(history["epoch"].max()) if not history.empty else 1
    ax.set_xlim(0, max(1, last_epoch) + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mAP")
    return _save(fig, ax, f"{case}: mAP per epoch", path)


# --- HTML ---------------------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
div.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
td.text { text-align: left; }
tr.published td { background: #f7f3e8; }
tr.measured td { background: #eef5ee; }
p.legend, li { font-size: 13px; color: #444; max-width: 70em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 1em 0.5em 0; }
"""
_TEXT_COLUMNS = {"source", "vendor", "topology", "precision", "fix_hp", "mode", "reference"}


def _html_table(rows: Sequence[dict[str, str]], columns: Sequence[str], row_class: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        css = f' class="{html.escape(r[row_class])}"' if row_class else ""
        cells = "".join(f'<td{" class=text" if c in _TEXT_COLUMNS else ""}>{html.escape(r.get(c, ""))}</td>'
                        for c in columns)
        body.append(f"<tr{css}>{cells}</tr>")
    # in a box of its own that scrolls sideways when the table is wider than the page
    return f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def html_report(comparison: Comparison, charts: dict[str, list[Path]]) -> str:
    sections = []
    columns = display_columns(comparison.baseline)
    for case, table in comparison.table.groupby("case", sort=False):
        section = [f'<h2 id="{html.escape(case)}">{html.escape(case)}</h2>',
                   _html_table(display_rows(table, comparison.baseline), columns, row_class="source")]
        notes = _notes(table)
        if notes:
            section.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        scaling = comparison.scaling[comparison.scaling["case"] == case]
        if len(scaling):
            section += ["<h3>Scaling efficiency</h3>", _html_table(_scaling_rows(scaling), SCALING_COLUMNS)]
        case_charts = charts.get(case, [])
        if case_charts:  # the files beside the report, then the pictures themselves (the page stands alone)
            section.append("<p class=\"legend\">Charts: " + " · ".join(
                f'<a href="{html.escape(c.name)}">{html.escape(c.stem)}</a>' for c in case_charts) + "</p>")
        for chart in case_charts:
            data = base64.b64encode(chart.read_bytes()).decode()
            section.append(f'<img alt="{html.escape(chart.stem)}" src="data:image/png;base64,{data}">')
        sections.append("\n".join(section))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>accelbench comparison</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>accelbench comparison</h1>\n"
            f"<p class=\"legend\">Baseline: <b>{html.escape(comparison.baseline)}</b>. {html.escape(LEGEND)}</p>\n"
            + "\n".join(sections) + "\n</body></html>\n")


# --- writing and recording ----------------------------------------------------------------------------------
@dataclass
class ReportFiles:
    folder: Path
    files: list[Path] = field(default_factory=list)


def write_report(comparison: Comparison, folder: Path, tracking_uri: str | None = None) -> ReportFiles:
    folder.mkdir(parents=True, exist_ok=True)
    report = ReportFiles(folder)
    charts: dict[str, list[Path]] = {}
    styles = series_styles(comparison.table)  # one look per config across every case's charts
    for case, table in comparison.table.groupby("case", sort=False):
        case_runs = comparison.runs[comparison.runs["case"] == case]
        curve_runs = case_runs[(case_runs["source"] == names.SOURCE_MEASURED)
                               & case_runs["mode"].isin(["convergence", "smoke"])].head(MAX_CURVE_RUNS)
        history = map_history(list(curve_runs["run_id"]), tracking_uri)
        made = [*(bar_chart(table, case, metric, label, folder / f"{prefix}_{case}.png", styles)
                  for prefix, metric, label in BAR_CHARTS),
                scaling_chart(table, case, folder / f"scaling_{case}.png", styles),
                map_chart(table, history, case_runs, case, folder / f"map_curves_{case}.png")]
        charts[case] = [p for p in made if p is not None]
    (folder / "comparison.md").write_text(markdown_report(comparison), encoding="utf-8")
    comparison.table.to_csv(folder / "comparison.csv", index=False)
    (folder / names.ARTIFACT_REPORT_HTML).write_text(html_report(comparison, charts), encoding="utf-8")
    report.files = [folder / "comparison.md", folder / "comparison.csv", folder / names.ARTIFACT_REPORT_HTML,
                    *[p for paths in charts.values() for p in paths]]
    return report


def chart_images(report: ReportFiles, run_id: str) -> str:
    """Markdown images of the report's charts, served by the tracking server from the run's artifacts, so the run's
    page shows them at the top of its description without unfolding the artifacts."""
    images = [f"![{path.stem}](get-artifact?path={urllib.parse.quote(path.name)}&run_uuid={run_id})"
              for path in report.files if path.suffix == ".png"]
    return " ".join(images) + "\n\n" if images else ""


def record_comparison_run(comparison: Comparison, report: ReportFiles, experiment: str) -> str:
    """One run tagged bench.kind=comparison holding the report files; its description is the Markdown table.

    Through the tracker (the client API): under `mlflow run` it attaches to the project's run (MLFLOW_RUN_ID).
    """
    from suite.tracking.run_page import link_view, search_link
    from suite.tracking.tracker import MlflowTracker
    from suite.tracking.views import current_rows, run_path, save_views

    cases = sorted(comparison.table["case"].unique())
    vendors = sorted(comparison.table["vendor"].unique())
    description = markdown_report(comparison)
    if len(description) > DESCRIPTION_LIMIT:
        description = description[:DESCRIPTION_LIMIT] + "\n\n(truncated: see comparison.md in the artifacts)"
    tracker = MlflowTracker.start(experiment=experiment, run_name=f"comparison/{'+'.join(cases)}", tags={
        names.TAG_KIND: names.KIND_COMPARISON,
        names.TAG_CASES: ",".join(cases),
        names.TAG_VENDORS: ",".join(vendors),
        names.TAG_BASELINE: comparison.baseline,
    })
    status = "FAILED"
    try:
        # The description is set once the run exists: its links name the experiment the run landed in.
        searches = {f"the {case} runs": current_rows(tag_clause(names.TAG_CASE, case)) for case in cases}
        per_topology = (names.TAG_TOPOLOGY,)
        if tracker.experiment_id:
            save_views(tracker.client, tracker.experiment_id,
                       [link_view(t, s, per_topology) for t, s in searches.items()])
        links = " · ".join(search_link(tracker.experiment_id or "0", text, search, per_topology)
                           for text, search in searches.items())
        charts = chart_images(report, tracker.run_id)
        # MLflow folds a run's description to its first 100 pixels: the first line opens the whole report (table
        # and charts) on the run's Artifacts tab, where the UI shows an HTML file in the page.
        report_page = run_path(tracker.experiment_id or "0", tracker.run_id, names.ARTIFACT_REPORT_HTML)
        whole = (f"**[The whole report: table and charts]({report_page})** (on this run's Artifacts tab)  \n"
                 if tracker.experiment_id else "")
        tracker.set_tags({names.TAG_DESCRIPTION: f"{whole}**Runs compared:** {links}\n\n{charts}{description}"})
        table = comparison.table
        tracker.log_metrics({"compared_runs": len(comparison.runs), "table_rows": len(table),
                             "implausible_rows": int((table["implausible"] != "").sum()),
                             "cases": len(cases), "accelerators": len(vendors),
                             "published_rows": int((table["source"] == names.SOURCE_PUBLISHED).sum()),
                             "measured_rows": int((table["source"] == names.SOURCE_MEASURED).sum())})
        for path in report.files:
            tracker.log_artifact(path)
        status = "FINISHED"
    finally:
        tracker.finish(status)
    return tracker.run_id
