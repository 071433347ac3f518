"""Reading a device's telemetry: memory used and total, utilisation, power, temperature and the energy counter,
through whatever the vendor offers: NVML on NVIDIA, MetaX's `pymxsml` binding or its `mx-smi` tool, Kunlunxin's
`xpu-smi -m` or `xpu_smi` (text readers in suite.vendors.smi). One `DeviceProbe` per device; adapters build them,
suite.engine.telemetry samples them. A reading a device does not expose stays None, never zero; energy comes only
from a device counter, never integrated from power.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from suite.names import GIB, MIB
from suite.vendors.smi import ToolReport, UnparseableOutput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceReading:
    time: float                       # time.time() of the reading
    memory_used_gib: float | None = None
    utilization_pct: float | None = None
    power_w: float | None = None
    energy_j: float | None = None     # the device's cumulative energy counter, where it has one
    memory_total_gib: float | None = None
    temperature_c: float | None = None


class DeviceProbe(Protocol):
    def read(self) -> DeviceReading: ...
    def facts(self) -> dict[str, str]: ...
    def close(self) -> None: ...


class NvmlProbe:
    """One NVIDIA GPU through NVML (the nvidia-ml-py bindings), found by the UUID torch reports for it."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle

    @classmethod
    def open(cls, uuid: str | None, index: int) -> NvmlProbe | None:
        """The probe, or None where NVML is missing or refuses (no driver, a container without the library)."""
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as error:  # noqa: BLE001 - ImportError, NVMLError_LibraryNotFound, ...
            logger.info("NVML unavailable (%s): no device telemetry", error)
            return None
        try:
            if uuid:
                # torch gives the bare UUID; NVML wants its "GPU-" form. By UUID, CUDA_VISIBLE_DEVICES reordering
                # cannot make us read another process's GPU.
                text = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
                handle = pynvml.nvmlDeviceGetHandleByUUID(text)
            else:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as error:  # noqa: BLE001
            logger.info("NVML has no handle for device %s (%s): no device telemetry", uuid or index, error)
            return None
        return cls(pynvml, handle)

    def _try(self, function: str, *args: Any) -> Any:
        try:
            return getattr(self._nvml, function)(*args)
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends: the reading is simply absent
            return None

    def read(self) -> DeviceReading:
        memory = self._try("nvmlDeviceGetMemoryInfo", self._handle)
        rates = self._try("nvmlDeviceGetUtilizationRates", self._handle)
        power_mw = self._try("nvmlDeviceGetPowerUsage", self._handle)
        energy_mj = self._try("nvmlDeviceGetTotalEnergyConsumption", self._handle)
        temperature = self._try("nvmlDeviceGetTemperature", self._handle, 0)  # NVML_TEMPERATURE_GPU
        return DeviceReading(
            time=time.time(),
            memory_used_gib=memory.used / GIB if memory is not None else None,
            utilization_pct=float(rates.gpu) if rates is not None else None,
            power_w=power_mw / 1000 if power_mw is not None else None,
            energy_j=energy_mj / 1000 if energy_mj is not None else None,
            memory_total_gib=memory.total / GIB if memory is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
        )

    def facts(self) -> dict[str, str]:
        """Driver and device facts for the environment record (fields the driver does not report are left out)."""
        facts: dict[str, str] = {}
        if (driver := self._try("nvmlSystemGetDriverVersion")) is not None:
            facts["driver"] = _text(driver)
        if (cuda := self._try("nvmlSystemGetCudaDriverVersion_v2")) is not None:
            facts["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        if (name := self._try("nvmlDeviceGetName", self._handle)) is not None:
            facts["accelerator_nvml_name"] = _text(name)
        if (limit := self._try("nvmlDeviceGetEnforcedPowerLimit", self._handle)) is not None:
            facts["accelerator_power_limit_w"] = f"{limit / 1000:.0f}"
        if (vbios := self._try("nvmlDeviceGetVbiosVersion", self._handle)) is not None:
            facts["accelerator_vbios"] = _text(vbios)
        generation = self._try("nvmlDeviceGetCurrPcieLinkGeneration", self._handle)
        width = self._try("nvmlDeviceGetCurrPcieLinkWidth", self._handle)
        if generation is not None and width is not None:
            facts["accelerator_pcie"] = f"gen{generation} x{width}"
        links = [self._try("nvmlDeviceGetNvLinkState", self._handle, link) for link in range(18)]
        active = sum(1 for state in links if state == 1)
        if active:
            facts["accelerator_nvlinks_active"] = str(active)
        return facts

    def close(self) -> None:
        self._try("nvmlShutdown")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def physical_index(local_index: int, visible_devices_var: str | None) -> int:
    """The index a vendor tool lists a process's device under: the visible-devices variable maps process-local
    indexes to physical ones (`CUDA_VISIBLE_DEVICES=4,5` makes local device 1 physical device 5)."""
    visible = os.environ.get(visible_devices_var or "", "")
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if local_index < len(entries) and entries[local_index].isdigit():
        return int(entries[local_index])
    return local_index


@dataclass(frozen=True)
class ToolCommand:
    """One way to ask a vendor tool: what to run, which reader parses it, and its name in the environment record."""

    name: str
    argv: Sequence[str] | str  # a string runs through the shell (a published pipeline)
    reader: Callable[[str], ToolReport]
    executable: str  # must be on PATH for the command to be tried

    def run(self, timeout_s: float = 10.0) -> str:
        shell = isinstance(self.argv, str)
        result = subprocess.run(self.argv, shell=shell, capture_output=True, text=True, timeout=timeout_s,
                                errors="replace")
        if result.returncode != 0:
            raise UnparseableOutput(f"{self.name} exited with code {result.returncode}: "
                                    f"{(result.stderr.strip().splitlines() or [''])[-1][:200]}")
        return result.stdout


class ToolProbe:
    """One device through a vendor's command-line tool, run at every reading (a few ms; readings are 1 s apart).

    Output that stops parsing mid-run is one warning, then no more readings from it: telemetry never stops a run.
    """

    def __init__(self, command: ToolCommand, index: int, first: ToolReport) -> None:
        self.command = command
        self.index = index
        self.report = first  # the output read when the probe was opened (every device the tool lists)
        self._facts = dict(first.facts)
        self._broken = False

    @classmethod
    def open(cls, commands: Sequence[ToolCommand], index: int) -> ToolProbe | None:
        """The first command on PATH whose output parses and lists device `index`; None (with one warning where a
        tool is there but unreadable) otherwise."""
        problems = []
        for command in commands:
            if shutil.which(command.executable) is None:
                continue
            try:
                report = command.reader(command.run())
                report.device(index)
            except (UnparseableOutput, OSError, subprocess.SubprocessError) as error:
                problems.append(f"{command.name}: {error}")
                continue
            return cls(command, index, report)
        if problems:
            logger.warning("device tool output could not be read (%s): no device telemetry", "; ".join(problems))
        else:
            logger.debug("no device tool (%s) on PATH: no device telemetry",
                        ", ".join(dict.fromkeys(c.executable for c in commands)))
        return None

    def read(self) -> DeviceReading:
        now = time.time()
        if self._broken:
            return DeviceReading(time=now)
        try:
            device = self.command.reader(self.command.run()).device(self.index)
        except (UnparseableOutput, OSError, subprocess.SubprocessError) as error:
            self._broken = True
            logger.warning("%s stopped giving readable output (%s): no more device telemetry", self.command.name,
                           error)
            return DeviceReading(time=now)
        return DeviceReading(
            time=now,
            memory_used_gib=device.memory_used_mib * MIB / GIB if device.memory_used_mib is not None else None,
            memory_total_gib=device.memory_total_mib * MIB / GIB if device.memory_total_mib is not None else None,
            utilization_pct=device.utilization_pct, power_w=device.power_w, temperature_c=device.temperature_c)

    def facts(self) -> dict[str, str]:
        """The tool's name and what its banner states (its version, the driver's, MACA's or XPU-RT's)."""
        facts = {"telemetry_source": self.command.name}
        for key, value in self._facts.items():
            facts["telemetry_tool_version" if key == "tool_version" else key] = value
        return facts

    def close(self) -> None:
        return None


class PymxsmlProbe:
    """One MetaX GPU through `pymxsml`, MetaX's NVML-shaped Python binding (the surface vLLM-metax and gpustack use:
    mxSmlInit, mxSmlGetMemoryInfo with vramUse/vramTotal in KiB, mxSmlGetDeviceIpUsage, mxSmlGetTemperatureInfo in
    hundredths of a degree, mxSmlGetBoardPowerInfo in mW). MetaX publishes no energy counter through it."""

    def __init__(self, module: Any, index: int) -> None:
        self._mxsml = module
        self.index = index

    @classmethod
    def open(cls, index: int) -> PymxsmlProbe | None:
        try:
            import pymxsml

            pymxsml.mxSmlInit()
            pymxsml.mxSmlGetMemoryInfo(index)
        except Exception as error:  # noqa: BLE001 - ImportError, MXSMLError, a binding without the function
            logger.debug("pymxsml unavailable (%s)", error)
            return None
        return cls(pymxsml, index)

    def _try(self, function: str, *args: Any) -> Any:
        try:
            return getattr(self._mxsml, function)(*args)
        except Exception:  # noqa: BLE001 - an MXSMLError or a missing function: that reading is absent
            return None

    def read(self) -> DeviceReading:
        memory = self._try("mxSmlGetMemoryInfo", self.index)
        usage = self._try("mxSmlGetDeviceIpUsage", self.index, getattr(self._mxsml, "MXSML_USAGE_XCORE", 0))
        temperature = self._try("mxSmlGetTemperatureInfo", self.index,
                                getattr(self._mxsml, "MXSML_TEMPERATURE_HOTSPOT", 0))
        power = self._try("mxSmlGetBoardPowerInfo", self.index)
        power_w = sum((item.power or 0) for item in power) / 1000 if power else None
        return DeviceReading(
            time=time.time(),
            memory_used_gib=memory.vramUse * 1024 / GIB if memory is not None else None,
            memory_total_gib=memory.vramTotal * 1024 / GIB if memory is not None else None,
            utilization_pct=float(usage) if usage is not None else None,
            temperature_c=temperature / 100 if temperature is not None else None,
            power_w=power_w)

    def facts(self) -> dict[str, str]:
        facts = {"telemetry_source": "pymxsml"}
        if (maca := self._try("mxSmlGetMacaVersion")) is not None:
            facts["maca"] = _text(maca)
        driver_unit = getattr(self._mxsml, "MXSML_VERSION_DRIVER", None)
        if driver_unit is not None and (driver := self._try("mxSmlGetDeviceVersion", self.index, driver_unit)):
            facts["driver"] = _text(driver)
        if (info := self._try("mxSmlGetDeviceInfo", self.index)) is not None and getattr(info, "deviceName", None):
            facts["accelerator_tool_name"] = _text(info.deviceName)
        return facts

    def close(self) -> None:
        return None
