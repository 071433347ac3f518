"""Readers of the vendors' device tools: MetaX `mx-smi`, Kunlunxin `xpu-smi -m` and `xpu_smi`, as text -> numbers.

The box-drawn tables (`mx-smi`, `xpu_smi`) are read by their header: each cell of a device block is matched to the
header cell above it, and the quantity is taken from the cell whose header names it (`Memory-Usage`,
`Pwr:Usage/Cap`, `Temp`, `GPU-Util`/`XPU-Util`), never from a fixed position. The layout moved between mx-smi 2.2.4
and 2.2.9 (FlagPerf's fixed awk positions read the wrong fields on 2.2.9); a third layout with the same header words
still parses. `xpu-smi -m` prints one machine-readable line per device whose field positions are what public
parsers (FlagPerf's Kunlunxin monitor, SwanLab) read. Output that does not parse raises `UnparseableOutput`; the
probes in suite.engine.telemetry turn that into one warning and no telemetry. Recorded real output of each tool is in
tests/data/smi/.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field


class UnparseableOutput(ValueError):
    """The tool's output does not have the shape this reader knows."""


@dataclass(frozen=True)
class ToolDevice:
    """One device as its tool reports it; a figure the tool does not print stays None."""

    index: int
    name: str | None = None
    bus_id: str | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    power_w: float | None = None
    power_cap_w: float | None = None
    temperature_c: float | None = None
    utilization_pct: float | None = None


@dataclass(frozen=True)
class ToolReport:
    devices: list[ToolDevice]
    facts: dict[str, str] = field(default_factory=dict)  # tool, driver and runtime versions from its banner

    def device(self, index: int) -> ToolDevice:
        for device in self.devices:
            if device.index == index:
                return device
        raise UnparseableOutput(f"no device {index} in the tool's output (devices: "
                                f"{', '.join(str(d.index) for d in self.devices) or 'none'})")


NUMBER = r"(\d+(?:\.\d+)?)"
MEMORY = re.compile(NUMBER + r"\s*(?:MiB)?\s*/\s*" + NUMBER + r"\s*MiB")
POWER = re.compile(NUMBER + r"\s*W\s*/\s*" + NUMBER + r"\s*W")
TEMPERATURE = re.compile(r"(?<![\w.])" + NUMBER + r"\s*C\b")
PERCENT = re.compile(NUMBER + r"\s*%")
BUS_ID = re.compile(r"\b[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F]\b")
INDEX_WORDS = ("gpu", "xpu", "board")
VERSION_FACTS = {  # banner text -> fact name
    "kernel mode driver": "driver",
    "driver": "driver",
    "maca": "maca",
    "bios": "bios",
    "xpu-rt": "xpu_runtime",
}


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _banner_facts(lines: list[str]) -> dict[str, str]:
    facts: dict[str, str] = {}
    for line in lines:
        text = line.strip().strip("|")
        tool = re.search(r"\b(MX-SMI|XPU-SMI)\s+(\d[\w.]*)", text, re.IGNORECASE)
        if tool:
            facts["tool_version"] = tool.group(2)
        tool = re.match(r"\s*mx-smi\s+version:\s*(\S+)", text, re.IGNORECASE)
        if tool:
            facts["tool_version"] = tool.group(1)
        for name, version in re.findall(r"([A-Za-z][A-Za-z -]*?)\s+Version:\s*(\S+)", text):
            key = VERSION_FACTS.get(name.strip().lower().removeprefix("mx-smi").removeprefix("xpu-smi").strip())
            if key:
                facts.setdefault(key, version)
    return facts


def _separator_like(stripped: str) -> bool:
    """A rule between table rows: `+----+`, `|----+----|`, `|====+====|`."""
    return bool(re.match(r"^[|+][-=+|]*$", stripped)) and any(c in stripped for c in "-=")


def _starts_with_index(stripped: str) -> bool:
    cells = _cells(stripped)
    return bool(cells and cells[0].split() and cells[0].split()[0].isdigit())


def read_table(text: str) -> ToolReport:
    """A box-drawn device table (`mx-smi`, `xpu_smi`), read by its header cells.

    Rows are found by their content, not by a rule line: the header is the run of table rows around the one naming
    Memory-Usage, a device block starts at a row whose first cell is a device index and takes the rows below it up
    to the next rule, index row or blank line. So the table reads with or without the `|====|` line under the
    header (mx-smi 2.2.6 as its public documentation shows it has none) and with or without rules between devices.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    stripped = [line.strip() for line in lines]
    named = next((i for i, line in enumerate(stripped) if line.startswith("|") and "Memory-Usage" in line
                  and not _starts_with_index(line)), None)
    if named is None:
        raise UnparseableOutput("the table header names no Memory-Usage column")

    def header_row(i: int) -> bool:
        return (0 <= i < len(lines) and stripped[i].startswith("|") and not _separator_like(stripped[i])
                and not _starts_with_index(stripped[i]))

    first, last = named, named
    while header_row(first - 1):
        first -= 1
    while header_row(last + 1):
        last += 1
    header_rows = [_cells(stripped[i]) for i in range(first, last + 1)]
    devices = []
    block: list[list[str]] = []
    for line in stripped[last + 1:]:
        if line.startswith("|") and not _separator_like(line):
            if _starts_with_index(line) and block:
                devices.append(_device(block, header_rows))
                block = []
            if block or _starts_with_index(line):
                block.append(_cells(line))
                continue
            raise UnparseableOutput(f"a table row that belongs to no device: {line[:80]!r}")
        if block:  # a rule, a blank line or other text ends a device's block
            devices.append(_device(block, header_rows))
            block = []
        if devices and not _separator_like(line):
            break  # the device table ends; what follows (processes) is another table
    if block:
        devices.append(_device(block, header_rows))
    if not devices:
        raise UnparseableOutput("the table lists no devices")
    return ToolReport(devices, _banner_facts(lines[:first]))


def _device(block: list[list[str]], header_rows: list[list[str]]) -> ToolDevice:
    if len(block) != len(header_rows) or any(len(v) != len(h) for v, h in zip(block, header_rows, strict=True)):
        raise UnparseableOutput("a device block does not line up with the header")
    pairs = [(h, v) for header, values in zip(header_rows, block, strict=True)
             for h, v in zip(header, values, strict=True)]
    # The device index heads the first cell whose header begins with the device word (GPU, XPU, Board).
    index = next((int(v.split()[0]) for h, v in pairs if h.split() and h.split()[0].lower() in INDEX_WORDS
                  and v.split() and v.split()[0].isdigit()), None)
    if index is None:
        raise UnparseableOutput(f"a device block has no index under a GPU/XPU/Board header: {block[0]!r}")
    found: dict[str, object] = {"index": index}
    for header, value in pairs:
        words = header.split()
        lowered = [w.lower() for w in words]
        if "name" in lowered:
            tokens = value.split()
            position = lowered.index("name")
            tokens = tokens[position:len(tokens) - (len(words) - position - 1)]
            found["name"] = " ".join(tokens) or None
        if "Memory-Usage" in words and (match := MEMORY.search(value)):
            found["memory_used_mib"], found["memory_total_mib"] = float(match[1]), float(match[2])
        if "Pwr:Usage/Cap" in words and (match := POWER.search(value)):
            found["power_w"], found["power_cap_w"] = float(match[1]), float(match[2])
        if "Temp" in words and (match := TEMPERATURE.search(value)):
            found["temperature_c"] = float(match[1])
        if any(w.endswith("-Util") for w in words) and (match := PERCENT.search(value)):
            found["utilization_pct"] = float(match[1])
        if any(w.lower() == "bus-id" for w in words) and (match := BUS_ID.search(value)):
            found["bus_id"] = match[0]
    if "memory_used_mib" not in found:
        raise UnparseableOutput(f"device {found['index']}: no memory figure under Memory-Usage")
    return ToolDevice(**found)  # type: ignore[arg-type]


def read_xpu_smi_machine(text: str) -> ToolReport:
    """`xpu-smi -m`: one line per device, fields by position as public parsers read them (1-based: $1 bus id,
    $2 index, $5 temperature C, $9 power W, $18/$19 memory used/total MiB, $20 utilisation %, then the quoted
    model name; $16/$17 are the L3 cache, not device memory)."""
    devices = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = shlex.split(line)
            if len(fields) < 20 or not BUS_ID.fullmatch(fields[0]):
                raise ValueError("not a device line")
            name = next((f for f in fields[20:] if re.search(r"[A-Za-z]", f) and ":" not in f), None)
            devices.append(ToolDevice(index=int(fields[1]), name=name, bus_id=fields[0],
                                      temperature_c=float(fields[4]), power_w=float(fields[8]),
                                      memory_used_mib=float(fields[17]), memory_total_mib=float(fields[18]),
                                      utilization_pct=float(fields[19])))
        except ValueError as error:
            raise UnparseableOutput(f"xpu-smi -m line {number}: {error}") from None
    if not devices:
        raise UnparseableOutput("xpu-smi -m printed no device lines")
    return ToolReport(devices)


FLAGPERF_FIELDS = re.compile(r"^\s*" + NUMBER + r"C\s+" + NUMBER + r"W\s+" + NUMBER + r"MiB\s+" + NUMBER
                             + r"MiB\s+" + NUMBER + r"%\s*$")
# FlagPerf's published R300 (driver 4.0.25) recipe: the R300 `xpu_smi` table's raw layout is not public, but these
# positions were read off it on R300 hardware (temperature, power, memory used, memory total, utilisation).
R300_PIPELINE = "xpu_smi | grep xpu | awk '{print $29\"C\",$27\"W\",$22\"MiB\",$24\"MiB\",$14\"%\"}'"


def read_flagperf_r300_fields(text: str) -> ToolReport:
    """The output of `R300_PIPELINE`: `37C 74W 0MiB 32768MiB 0%` per device, in device order."""
    devices = []
    for line in (line for line in text.splitlines() if line.strip()):
        match = FLAGPERF_FIELDS.match(line)
        if not match:
            raise UnparseableOutput(f"not a 'temperature power used total utilisation' line: {line.strip()!r}")
        temperature, power, used, total, utilization = (float(v) for v in match.groups())
        devices.append(ToolDevice(index=len(devices), temperature_c=temperature, power_w=power,
                                  memory_used_mib=used, memory_total_mib=total, utilization_pct=utilization))
    if not devices:
        raise UnparseableOutput("no device lines")
    return ToolReport(devices)
