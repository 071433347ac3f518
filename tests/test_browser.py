"""The comparison report and the MLflow UI, loaded in a real headless browser (Debian's chromium).

Skipped where chromium is not installed (`bash scripts/check_browser.sh` installs it and runs these). Screenshots go
to $ACCELBENCH_SCREENSHOTS when set (the script sets it), else to the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import pytest

from suite import names
from suite.colors import accelerator_color
from suite.tracking.views import run_path
from tests.helpers import UiProcess, invoke, linked_filters, record_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/check_browser.sh)")
# Without the background-networking switches chromium keeps dialling Google's hosts on a closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1600,1000"]


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ACCELBENCH_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _chromium(url: str, profile: Path, *extra: str, budget_ms: int = 20000) -> str:
    # Chromium's singleton socket lives in TMPDIR and its path must stay short (tests set a deep TMPDIR).
    with tempfile.TemporaryDirectory(prefix="chromium-", dir="/tmp") as scratch:
        result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                 f"--virtual-time-budget={budget_ms}", *extra, url],
                                capture_output=True, text=True, timeout=180, env={**os.environ, "TMPDIR": scratch})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class _Rows(HTMLParser):
    """Text of every table row (<tr>) and of the whole document."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(dom: str) -> _Rows:
    parser = _Rows()
    parser.feed(dom)
    return parser


@pytest.fixture
def compared(tmp_path: Path, store_with_published: str) -> Path:
    record_run(vendor="nvidia_h100", topology="1x1", metrics={
        "p_whole": 45.26, "p_train": 45.26, "p_core": 47.46, "p_core_unsynced": 69.65, "mem": 29.1,
        "mem_total": 79.2, "e2e_time": 41.4})
    out = tmp_path / "report"
    result = invoke("compare", "--case", "faster_rcnn", "--out", str(out))
    assert result.exit_code == 0, result.stderr[-2000:]
    return out


def test_html_report_renders_the_rows_in_a_browser(compared: Path, tmp_path: Path) -> None:
    url = (compared / "comparison.html").as_uri()
    page = _parse(_chromium(url, tmp_path / "profile", "--dump-dom"))
    header = next(r for r in page.rows if r and r[0] == "source" and "p_core" in r)
    rows = [dict(zip(header, r, strict=True)) for r in page.rows
            if len(r) == len(header) and r[0] in ("published", "measured")]
    a100 = [(r["topology"], r["fix_hp"], r["p_core"], r["timing"]) for r in rows if r["vendor"] == "nvidia_a100"]
    assert a100 == [("1x1", "bs=16,lr=0.16", "45", "host"), ("1x8", "/", "199", "host"),
                    ("1x8", "bs=16,lr=0.16", "298", "host"), ("2x8", "bs=16,lr=0.16", "601", "host")]
    (h100,) = [r for r in rows if r["vendor"] == "nvidia_h100"]
    assert (h100["source"], h100["p_core"], h100["timing"], h100["p_core_host"]) == ("measured", "47.46", "sync",
                                                                                     "69.65")
    assert h100["vs nvidia_a100"] == "1.55x"  # 69.65 / 45, both on the host-clock definition
    assert len(rows) == 12
    shot = _screenshot_dir(tmp_path) / "comparison_html.png"
    _chromium(url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


@pytest.fixture
def ui_server(compared: Path, tracking_uri: str, tmp_path: Path):
    """`accelbench ui` on the store the runs and the comparison went to."""
    ui = UiProcess()
    try:
        yield ui
    finally:
        ui.stop()


def _text(dom: str) -> str:
    return " ".join(" ".join(_parse(dom).text).split())


def test_mlflow_ui_opens_the_benchmark_views(ui_server: UiProcess, tracking_uri: str, tmp_path: Path) -> None:
    """Through `accelbench ui` (one server for every page: starting one costs seconds): the saved views it prints
    open in the training layout with the benchmark's columns, grouped by accelerator, and the chart view of a case;
    then the compare view and the run pages' descriptions."""
    table_line, *case_lines, report_line = ui_server.view_lines(8)
    assert table_line.startswith("benchmark table, one group per case and config: http://"), table_line
    chart_lines = case_lines[1::2]
    assert [line.split(" charts")[0] for line in chart_lines] == ["faster_rcnn", "mask_rcnn", "retinanet"]
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name("accelbench").experiment_id
    table_url = case_lines[0].rsplit(": ", 1)[1]  # the faster_rcnn table
    current = f"tags.`{names.TAG_SUPERSEDED}` = 'false'"
    assert linked_filters(tracking_uri, experiment_id, table_url) == [
        f"tags.`{names.TAG_CASE}` = 'faster_rcnn' and {current}"]

    # Wide enough that the grid renders every column it was given (it draws only the visible ones).
    wide = "--window-size=3000,1000"
    dom = _chromium(table_url, tmp_path / "profile", "--dump-dom", wide)
    text = _text(dom)
    assert "Model training" in text and "accelbench: faster_rcnn, one group per accelerator and config" in text
    for genai_only in ("Sessions", "Judges", "Evaluation runs"):  # the GenAI layout's sidebar
        assert genai_only not in text, genai_only
    columns = text[text.index("Run Name"):text.index("Group:")]
    for column in ("p_core", "p_train", "map", "mem", names.TAG_CASE, names.TAG_VENDOR, names.TAG_TOPOLOGY,
                   names.TAG_PRECISION, names.TAG_FIX_HP, names.TAG_SOURCE):
        assert column in columns, (column, columns)
    # the row's identity first, then its figures (MLflow's own order is metrics, then tags); the grid writes its
    # header cells in creation order and gives each its place on screen in aria-colindex
    placed = sorted((int(index), column) for index, column in re.findall(
        r'role="columnheader"[^>]*aria-colindex="(\d+)" col-id="([^"]+`)"', dom))
    shown = [column for _, column in placed]
    assert shown[:3] == ["attributes.`Run Name`", f"tags.`{names.TAG_CASE}`", f"tags.`{names.TAG_VENDOR}`"], shown
    assert shown.index(f"tags.`{names.TAG_PAGE_VERSION}`") < shown.index("metrics.`p_core`"), shown
    # run names say accelerator, topology and source first
    assert "nvidia_a100 1x8 published fix_hp seed · faster_rcnn" in text
    assert "Group by: bench.vendor +5" in text and "Sort: p_core" in text
    # one group per config: the A100's two published 1x8 rows (bs=16 and the case defaults) are two groups
    for config in ("bench.vendor: nvidia_a100, bench.topology: 1x8, bench.precision: tf32, bench.fix_hp: /,",
                   "bench.vendor: nvidia_a100, bench.topology: 1x8, bench.precision: tf32, bench.fix_hp: bs=16,",
                   "bench.vendor: nvidia_h100, bench.topology: 1x1", "bench.vendor: metax_c500",
                   "bench.vendor: kunlunxin_r300"):
        assert f"Group: {config}" in text, config
    assert "· retinanet" not in text and "comparison/" not in text  # one case; no comparison run
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_runs.png"
    _chromium(table_url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000

    charts_url = chart_lines[0].rsplit(": ", 1)[1]  # faster_rcnn
    assert "compareRunsMode=CHART" in charts_url
    assert linked_filters(tracking_uri, experiment_id, charts_url) == [
        f"tags.`{names.TAG_CASE}` = 'faster_rcnn' and {current}"]
    dom = _chromium(charts_url, tmp_path / "profile", "--dump-dom")
    text = _text(dom)
    assert "Model training" in text and "Benchmark per run, coloured by accelerator (3)" in text
    assert "· retinanet" not in text and "12 matching runs" in text
    charts = text[text.index("Benchmark per run"):]
    assert "p_core" in charts
    # every bar is one run, named in the legend: the A100's two published 1x8 rows are two bars (199 and 298),
    # never their average (248.50)
    p_core = charts[charts.index("p_core"):]
    assert "199.00" in p_core and "298.00" in p_core and "248.50" not in p_core
    assert "nvidia_a100 1x8 published seed · faster_rcnn" in p_core
    # and drawn in its accelerator's colour (the runs' mlflow.runColor tag), the report's colour for it
    fills = set(re.findall(r"fill: (rgb\([^)]*\))", dom))
    for vendor in ("nvidia_a100", "nvidia_h100"):
        red, green, blue = (int(accelerator_color(vendor)[i:i + 2], 16) for i in (1, 3, 5))
        assert f"rgb({red}, {green}, {blue})" in fills, (vendor, fills)
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_charts.png"
    _chromium(charts_url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000

    _run_pages_show_the_summary_table_and_links(ui_server.url, tracking_uri, tmp_path)

    # The comparison run's whole report, as `accelbench ui` links it: the HTML file shown in the run's page
    assert report_line.startswith("newest comparison report (comparison/faster_rcnn): http://"), report_line
    report_url = report_line.rsplit(": ", 1)[1]
    assert report_url.endswith("/artifacts/comparison.html?workflowType=machine_learning"), report_url
    dom = _chromium(report_url, tmp_path / "profile", "--dump-dom")
    assert 'class="mlflow-html-iframe"' in dom and "Model training" in _text(dom)
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_comparison_report.png"
    _chromium(report_url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000

    # MLflow's home page, then the experiment: the layout is the sidebar switch's (GenAI in a new browser)
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_experiment_from_home.png"
    _chromium(f"{ui_server.url}/#/experiments/{experiment_id}", tmp_path / "fresh-profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
    ui_url = ui_server.url

    # The compare view of two runs shows their p_core side by side.
    runs = client.search_runs([experiment_id], f"tags.`{names.TAG_CASE}` = 'faster_rcnn' and "
                              f"tags.`{names.TAG_TOPOLOGY}` = '1x1' and metrics.p_core > 0")
    assert len(runs) == 2
    ids = json.dumps([r.info.run_id for r in runs])
    url = (f"{ui_url}/#/compare-runs?runs={urllib.parse.quote(ids)}"
           f"&experiments={urllib.parse.quote(json.dumps([experiment_id]))}")
    text = " ".join(_parse(_chromium(url, tmp_path / "profile", "--dump-dom")).text).split()
    # The metrics block lists the metric names, then each metric's values, one per run, in the same order.
    block = text[text.index("Metrics", text.index("Parameters")):]
    block = block[block.index("only") + 1: block.index("Artifacts")]
    first_value = next(i for i, token in enumerate(block) if _is_number(token))
    metric_names, values = block[:first_value], block[first_value:]
    per_metric = {name: values[2 * i: 2 * i + 2] for i, name in enumerate(metric_names)}
    assert sorted(per_metric["p_core"]) == ["45", "47.46"], per_metric
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_compare.png"
    _chromium(url, tmp_path / "profile", f"--screenshot={shot}")


def _run_pages_show_the_summary_table_and_links(ui_server: str, tracking_uri: str, tmp_path: Path) -> None:
    """A published run's page and the comparison run's page, through `accelbench ui`: the description's Markdown
    table rendered as a table, and its links to the runs it compares with."""
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name("accelbench").experiment_id
    (published,) = client.search_runs([experiment_id], f"tags.`{names.TAG_VENDOR}` = 'nvidia_a100' and "
                                      f"tags.`{names.TAG_CASE}` = 'faster_rcnn' and "
                                      f"tags.`{names.TAG_TOPOLOGY}` = '2x8'")
    url = f"{ui_server}/{run_path(experiment_id, published.info.run_id)}"
    dom = _chromium(url, tmp_path / "profile", "--dump-dom")
    assert "Model training" in _text(dom) and "Sessions" not in _text(dom)  # the training layout
    page = _parse(dom)
    header = next(r for r in page.rows if "p_core" in r)
    (row,) = [r for r in page.rows if len(r) == len(header) and r != header and "601" in r]
    assert dict(zip(header, row, strict=True))["p_core"] == "601"
    case_filter = f"tags.`{names.TAG_CASE}` = 'faster_rcnn' and tags.`{names.TAG_SUPERSEDED}` = 'false'"
    assert case_filter in linked_filters(tracking_uri, experiment_id, dom)
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_run_page.png"
    _chromium(url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000

    (measured,) = client.search_runs([experiment_id], f"tags.`{names.TAG_VENDOR}` = 'nvidia_h100'")
    url = f"{ui_server}/{run_path(experiment_id, measured.info.run_id)}"
    text = _text(_chromium(url, tmp_path / "profile", "--dump-dom"))
    assert "Model training" in text and "nvidia_h100 1x1 measured fix_hp · faster_rcnn" in text
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_measured_run_page.png"
    _chromium(url, tmp_path / "profile", f"--screenshot={shot}")

    (comparison,) = client.search_runs([experiment_id], f"tags.`{names.TAG_KIND}` = '{names.KIND_COMPARISON}'")
    dom = _chromium(f"{ui_server}/{run_path(experiment_id, comparison.info.run_id)}", tmp_path / "profile",
                    "--dump-dom")
    assert "The whole report: table and charts" in _text(dom)  # its first line, above MLflow's fold
    rows = _parse(dom).rows
    header = next(r for r in rows if "vendor" in r and "p_core" in r)
    vendors = {dict(zip(header, r, strict=True))["vendor"] for r in rows if len(r) == len(header) and r != header}
    assert {"nvidia_a100", "nvidia_h100", "kunlunxin_r300"} <= vendors
    assert linked_filters(tracking_uri, experiment_id, dom) == [case_filter]
    # the charts are on the page itself, at the top of the description, served from the run's artifacts
    for chart in ("throughput", "map", "mem", "scaling"):
        assert f'src="get-artifact?path={chart}_faster_rcnn.png&amp;run_uuid={comparison.info.run_id}"' in dom, chart
    with urllib.request.urlopen(f"{ui_server}/get-artifact?path=scaling_faster_rcnn.png&run_uuid="
                                f"{comparison.info.run_id}", timeout=30) as response:
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    assert comparison.data.metrics["accelerators"] == 4 and comparison.data.metrics["cases"] == 1
    shot = _screenshot_dir(tmp_path) / "mlflow_ui_comparison_run.png"
    _chromium(f"{ui_server}/{run_path(experiment_id, comparison.info.run_id)}", tmp_path / "profile",
              f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
