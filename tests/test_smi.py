"""The vendor device-tool readers against every recorded real output in tests/data/smi (see its README for the
sources), exact per device; and the probes that run those tools, with stand-in executables on PATH."""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from suite.names import GIB
from suite.vendors import smi
from suite.vendors.kunlunxin import XPU_TOOLS
from suite.vendors.metax import MX_SMI
from suite.vendors.probes import PymxsmlProbe, ToolCommand, ToolProbe, physical_index

SMI = Path(__file__).resolve().parent / "data" / "smi"
STANDINS = Path(__file__).resolve().parent / "standins"


def _columns(report: smi.ToolReport, *fields: str) -> list[tuple]:
    return [tuple(getattr(d, f) for f in fields) for d in report.devices]


def test_mx_smi_2_2_4_table() -> None:
    report = smi.read_table((SMI / "mx-smi_2.2.4_C550_x8.txt").read_text())
    assert report.facts == {"tool_version": "2.2.4", "driver": "2.15.9", "maca": "2.32.0.6", "bios": "1.25.1.0"}
    assert [d.index for d in report.devices] == list(range(8))
    assert {(d.name, d.memory_used_mib, d.memory_total_mib, d.power_cap_w, d.utilization_pct)
            for d in report.devices} == {("MetaX C550", 858, 65536, 450, 0)}
    assert [d.power_w for d in report.devices] == [53, 53, 54, 54, 53, 55, 56, 56]
    assert [d.temperature_c for d in report.devices] == [29, 29, 30, 29, 30, 32, 32, 31]
    assert [d.bus_id for d in report.devices][:3] == ["0000:0f:00.0", "0000:34:00.0", "0000:48:00.0"]


def test_mx_smi_2_2_9_table_whose_columns_moved() -> None:
    report = smi.read_table((SMI / "mx-smi_2.2.9_C500_x8.txt").read_text())
    assert report.facts == {"tool_version": "2.2.9", "driver": "3.4.4", "maca": "3.3.0.15", "bios": "1.30.0.0"}
    assert [d.index for d in report.devices] == list(range(8))
    assert {(d.name, d.memory_used_mib, d.memory_total_mib, d.power_cap_w, d.utilization_pct)
            for d in report.devices} == {("MetaX C500", 826, 65536, 350, 0)}
    # FlagPerf's fixed positions read 2.2.4's power/temperature cells; on 2.2.9 they hold other things
    assert [d.power_w for d in report.devices] == [57, 58, 58, 60, 57, 56, 55, 56]
    assert [d.temperature_c for d in report.devices] == [35, 37, 36, 35, 33, 34, 34, 36]


def _swap_first_two_cells(text: str) -> str:
    """A third layout: the same header words, the first two columns of every table row swapped."""
    lines = []
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) >= 5 and not set(cells[1]) <= set("-=+ "):
            cells[1], cells[2] = cells[2], cells[1]
        lines.append("|".join(cells))
    return "\n".join(lines)


def test_a_new_layout_with_the_same_header_words_still_parses() -> None:
    recorded = smi.read_table((SMI / "mx-smi_2.2.9_C500_x8.txt").read_text())
    moved = smi.read_table(_swap_first_two_cells((SMI / "mx-smi_2.2.9_C500_x8.txt").read_text()))
    assert moved.devices == recorded.devices


def test_xpu_smi_p800_table() -> None:
    report = smi.read_table((SMI / "xpu_smi_P800_x8.txt").read_text())
    assert report.facts == {"driver": "5.0.21.21", "xpu_runtime": "5.0.21"}
    assert [d.index for d in report.devices] == list(range(8))
    # device memory, not the L3 line below it
    assert {(d.name, d.memory_used_mib, d.memory_total_mib, d.power_cap_w, d.utilization_pct)
            for d in report.devices} == {("P800 OAM", 0, 98304, 400, 0)}
    assert [d.power_w for d in report.devices] == [88, 90, 89, 89, 88, 90, 90, 87]
    assert [d.temperature_c for d in report.devices] == [37, 41, 36, 36, 40, 40, 39, 40]
    assert report.devices[7].bus_id == "00000000:A5:00.0"


def test_xpu_smi_machine_readable_lines() -> None:
    report = smi.read_xpu_smi_machine((SMI / "xpu-smi_-m_P800_x2.txt").read_text())
    assert _columns(report, "index", "bus_id", "temperature_c", "power_w", "memory_used_mib", "memory_total_mib",
                    "utilization_pct", "name") == [
        (0, "00000000:03:00.0", 36, 86, 90440, 98304, 0, "P800 OAM"),
        (1, "00000000:05:00.0", 39, 86, 90440, 98304, 0, "P800 OAM")]


def test_flagperf_r300_fields() -> None:
    report = smi.read_flagperf_r300_fields((SMI / "xpu_smi_R300_x8_awk-fields.txt").read_text())
    assert _columns(report, "temperature_c", "power_w", "memory_used_mib", "memory_total_mib",
                    "utilization_pct") == [
        (37, 74, 0, 32768, 0), (40, 114, 28653, 32768, 94), (34, 74, 0, 32768, 0), (37, 71, 0, 32768, 0),
        (43, 99, 28934, 32768, 99), (39, 74, 0, 32768, 0), (46, 114, 23730, 32768, 100), (38, 73, 0, 32768, 0)]


def _without_rules(text: str, between_devices: bool) -> str:
    """mx-smi 2.2.6 as its public documentation shows the table: two header lines and a block of two lines per
    device, no `|====|` line under the header (and, with `between_devices`, no rule between devices either)."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|=") or (between_devices and stripped.startswith("+-") and kept
                                          and kept[-1].strip().startswith("|") and "Memory-Usage" not in kept[-1]
                                          and not kept[-1].strip().startswith("| MACA")):
            continue
        kept.append(line)
    return "\n".join(kept)


@pytest.mark.parametrize("between_devices", [False, True], ids=["no-header-rule", "no-rules-at-all"])
@pytest.mark.parametrize("recorded", ["mx-smi_2.2.4_C550_x8.txt", "mx-smi_2.2.9_C500_x8.txt"])
def test_a_table_without_the_header_rule_is_read_by_its_rows_content(recorded: str, between_devices: bool) -> None:
    text = (SMI / recorded).read_text()
    bare = _without_rules(text, between_devices)
    assert "|=" not in bare
    assert smi.read_table(bare).devices == smi.read_table(text).devices
    assert len(smi.read_table(bare).devices) == 8


@pytest.mark.parametrize("reader", [smi.read_table, smi.read_xpu_smi_machine, smi.read_flagperf_r300_fields])
@pytest.mark.parametrize("text", ["", "command not found", "|===|\n| 0 | x |\n", "\x00\xff garbage"])
def test_output_that_does_not_parse_is_one_error(reader, text: str) -> None:
    with pytest.raises(smi.UnparseableOutput):
        reader(text)


def _tool(folder: Path, name: str, recorded: str | None = None, text: str | None = None) -> None:
    """An executable called `name` that prints a recorded file (or `text`), as the real tool would."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    source = f"open({str(SMI / recorded)!r}).read()" if recorded else repr(text)
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({source})\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def tool_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def test_mx_smi_probe_reads_its_device_and_banner(tool_path: Path) -> None:
    _tool(tool_path, "mx-smi", "mx-smi_2.2.9_C500_x8.txt")
    probe = ToolProbe.open([MX_SMI], 3)
    assert probe is not None
    reading = probe.read()
    assert reading.memory_used_gib == pytest.approx(826 / 1024) and reading.memory_total_gib == 64
    assert (reading.power_w, reading.temperature_c, reading.utilization_pct, reading.energy_j) == (60, 35, 0, None)
    assert probe.facts() == {"telemetry_source": "mx-smi", "telemetry_tool_version": "2.2.9", "driver": "3.4.4",
                             "maca": "3.3.0.15", "bios": "1.30.0.0"}


def test_kunlunxin_probe_prefers_machine_output_then_the_table(tool_path: Path) -> None:
    _tool(tool_path, "xpu_smi", "xpu_smi_P800_x8.txt")
    probe = ToolProbe.open(XPU_TOOLS, 5)
    assert probe is not None and probe.command.name == "xpu_smi" and probe.read().power_w == 90
    _tool(tool_path, "xpu-smi", "xpu-smi_-m_P800_x2.txt")
    probe = ToolProbe.open(XPU_TOOLS, 1)
    assert probe is not None and probe.command.name == "xpu-smi -m"
    assert probe.read().memory_used_gib == pytest.approx(90440 / 1024)


def test_unreadable_tool_output_is_one_warning_and_no_telemetry(tool_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    _tool(tool_path, "mx-smi", text="mx-smi: a layout nobody has seen\n")
    with caplog.at_level(logging.WARNING, logger="suite.vendors.probes"):
        assert ToolProbe.open([MX_SMI], 0) is None
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "mx-smi: the table header names no Memory-Usage column" in record.getMessage()
    # a tool that breaks mid-run: one warning, then empty readings, never an exception
    _tool(tool_path, "mx-smi", "mx-smi_2.2.4_C550_x8.txt")
    probe = ToolProbe.open([MX_SMI], 0)
    assert probe is not None
    _tool(tool_path, "mx-smi", text="")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="suite.vendors.probes"):
        assert probe.read().memory_used_gib is None and probe.read().power_w is None
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_no_tool_on_path_means_no_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ToolProbe.open([MX_SMI, *XPU_TOOLS], 0) is None


def test_a_tool_that_fails_is_not_read(tool_path: Path) -> None:
    failing = ToolCommand("mx-smi", [sys.executable, "-c", "import sys; sys.exit(3)"], smi.read_table,
                          sys.executable)
    assert ToolProbe.open([failing], 0) is None


@pytest.fixture
def pymxsml_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The pymxsml stand-in importable for one test only (later tests must not find MetaX's binding)."""
    monkeypatch.syspath_prepend(str(STANDINS / "pymxsml_site"))
    monkeypatch.delitem(sys.modules, "pymxsml", raising=False)
    yield
    sys.modules.pop("pymxsml", None)


def test_pymxsml_probe_on_the_stand_in(pymxsml_stand_in: None) -> None:
    probe = PymxsmlProbe.open(2)
    assert probe is not None
    reading = probe.read()
    assert reading.memory_used_gib == pytest.approx(826 * 1024 * 1024 / GIB) and reading.memory_total_gib == 64
    assert (reading.temperature_c, reading.power_w, reading.utilization_pct) == (35, 57, 0)
    assert probe.facts() == {"telemetry_source": "pymxsml", "maca": "3.3.0.15", "driver": "3.4.4",
                             "accelerator_tool_name": "MetaX C500"}
    assert PymxsmlProbe.open(9) is None  # no such device


def test_visible_devices_map_local_to_physical_indexes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPU_VISIBLE_DEVICES", "4,5")
    assert (physical_index(0, "XPU_VISIBLE_DEVICES"), physical_index(1, "XPU_VISIBLE_DEVICES")) == (4, 5)
    assert physical_index(1, "CUDA_VISIBLE_DEVICES_UNSET") == 1
