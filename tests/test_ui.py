"""`accelbench ui`: the MLflow UI for the store the runs went to, on 127.0.0.1 only, stopped cleanly.

The browser checks of the pages it serves are in tests/test_browser.py (they need chromium).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import mlflow
import pytest

from suite.results.published import import_published, load_published
from suite.tracking.views import EVERY_RUN, VIEW_TAG_PREFIX
from tests.helpers import UiProcess, linked_filters, run_cli


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree = {root}
    while True:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        if not more:
            return tree
        tree |= more


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _listening(root: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process tree listens on, from /proc."""
    inodes = set()
    for pid in _process_tree(root):
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not Path(table).is_file():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, packed), int(port, 16)))
    return found


def _other_address() -> str | None:
    """A non-loopback IPv4 address of this machine (a UDP connect sends nothing), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_ui_serves_the_store_on_loopback_only(tracking_uri: str) -> None:
    import_published(load_published(["nvidia_a100"]))
    experiment_id = mlflow.MlflowClient(tracking_uri).get_experiment_by_name("accelbench").experiment_id
    stored = len(mlflow.MlflowClient(tracking_uri).search_runs([experiment_id]))
    ui = UiProcess()
    try:
        assert ui.announcement == f"MLflow UI for {tracking_uri}: {ui.url}  (listening on 127.0.0.1 only; " \
                                  f"Ctrl-C stops it)"
        assert ui.url.startswith("http://127.0.0.1:")
        # Then the saved views to open, in the training layout: every row, and each case's charts.
        table, *per_case = ui.view_lines(7)
        assert table.startswith(f"benchmark table, one group per case and config: {ui.url}/#/experiments/"
                                f"{experiment_id}/")
        tables, charts = per_case[0::2], per_case[1::2]
        assert [line.split(":")[0] for line in tables] == ["faster_rcnn", "mask_rcnn", "retinanet"]
        assert [line.split(":")[0] for line in charts] == [f"{c} charts, one bar per run, coloured by accelerator"
                                                            for c in ("faster_rcnn", "mask_rcnn", "retinanet")]
        assert all("compareRunsMode=CHART" in line for line in charts)
        assert not any("compareRunsMode" in line for line in tables)
        filters = [linked_filters(tracking_uri, experiment_id, line)[0] for line in (table, *charts)]
        current = "tags.`bench.superseded` = 'false'"  # measured rows and the newest version of each page
        assert filters == [current, *(f"tags.`bench.case` = '{case}' and {current}"
                                      for case in ("faster_rcnn", "mask_rcnn", "retinanet"))]
        state = json.loads(json.loads(mlflow.MlflowClient(tracking_uri).get_experiment(experiment_id).tags[
            VIEW_TAG_PREFIX + EVERY_RUN.key])["state"])
        # a group only ever holds repeats of one config: its average is a mean of repeats
        assert [k["groupByData"] for k in state["groupBy"]["groupByKeys"]] == [
            "bench.case", "bench.vendor", "bench.topology", "bench.precision", "bench.fix_hp", "bench.source",
            "bench.page_version"]
        assert {"tags.`bench.case`", "tags.`bench.topology`", "tags.`bench.page_version`", "metrics.`p_core`",
                "metrics.`map`", "metrics.`mem_smi`", "metrics.`mem`"} <= set(state["selectedColumns"])
        # the identity columns come right after the run's name, before the figures, and the name shows whole
        order = state["columnOrder"]
        assert order[:8] == ["attributes.`Run Name`", "tags.`bench.case`", "tags.`bench.vendor`",
                             "tags.`bench.accelerator`", "tags.`bench.topology`", "tags.`bench.precision`",
                             "tags.`bench.fix_hp`", "tags.`bench.source`"]
        assert order.index("tags.`bench.page_version`") < order.index("metrics.`p_core`") < order.index(
            "metrics.`mem`")
        assert state["columnWidths"] == {"attributes.`Run Name`": 330}
        # charts draw runs (coloured by their mlflow.runColor tag), never a group's average
        assert state["useGroupedValuesInCharts"] is False
        assert [c["metricKey"] for c in state["compareRunCharts"]] == ["p_core", "map", "mem_smi"]
        request = urllib.request.Request(f"{ui.url}/api/2.0/mlflow/runs/search", method="POST",
                                         data=json.dumps({"experiment_ids": [experiment_id]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = json.load(response)["runs"]
        assert len(served) == stored > 0  # the same store the runs went to
        with urllib.request.urlopen(ui.url, timeout=30) as response:
            assert response.status == 200 and b"<html" in response.read().lower()

        # MLflow's GenAI job runners (huey consumers, several processes importing MLflow) are not started.
        commands = [_command_line(pid) for pid in _process_tree(ui.process.pid)]
        assert not [c for c in commands if "huey" in c], commands
        assert any(" server " in c for c in commands), commands
        listening = _listening(ui.process.pid)
        assert (("127.0.0.1", ui.port)) in listening
        assert {address for address, _ in listening} == {"127.0.0.1"}, listening
        other = _other_address()
        if other is not None:
            with pytest.raises(OSError):
                socket.create_connection((other, ui.port), timeout=3).close()
    finally:
        code = ui.stop()
    assert code == 0, ui.process.stderr.read()
    with pytest.raises(OSError):  # the server's workers went with it
        socket.create_connection(("127.0.0.1", ui.port), timeout=3).close()


def test_ui_names_a_busy_port_and_a_tracking_server() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("ui", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip() == f"accelbench: error: --port {port}: already in use on 127.0.0.1; choose " \
                                    f"another port (--port 0 picks a free one)"
    result = run_cli("ui", env={"MLFLOW_TRACKING_URI": "http://tracking.example:5000"})
    assert result.returncode == 0
    assert result.stdout.strip() == "runs are recorded on the tracking server http://tracking.example:5000: open " \
                                    "it in a browser (it serves the UI)"
