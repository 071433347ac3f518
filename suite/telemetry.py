"""Device telemetry sampled during training: memory used, utilisation, power (and the energy counter).

A `DeviceProbe` reads one device; the vendor adapter supplies it (NVML for NVIDIA). `Sampler` polls a probe on a
background thread while the training phase runs, so the peak device memory the driver saw (`mem_smi`, what the
published pages read off their smi tools) sits next to the allocator's peak (`mem`). Readings a device does not
expose stay missing, never zero.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from suite import names

logger = logging.getLogger(__name__)

GIB = 1024 ** 3


@dataclass(frozen=True)
class DeviceReading:
    time: float                       # time.time() of the reading
    memory_used_gib: float | None = None
    utilization_pct: float | None = None
    power_w: float | None = None
    energy_j: float | None = None     # the device's cumulative energy counter, where it has one


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
        return DeviceReading(
            time=time.time(),
            memory_used_gib=memory.used / GIB if memory is not None else None,
            utilization_pct=float(rates.gpu) if rates is not None else None,
            power_w=power_mw / 1000 if power_mw is not None else None,
            energy_j=energy_mj / 1000 if energy_mj is not None else None,
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


@dataclass
class Sampler:
    """Polls a probe every `interval_s` on a daemon thread between `start()` and `stop()`."""

    probe: DeviceProbe
    interval_s: float = 1.0
    readings: list[DeviceReading] = field(default_factory=list)
    edges: dict[str, DeviceReading] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.readings.append(self.probe.read())
        self._thread = threading.Thread(target=self._loop, name="accelbench-telemetry", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.readings.append(self.probe.read())
            except Exception as error:  # noqa: BLE001 - telemetry must never stop a benchmark
                logger.warning("device telemetry stopped: %s", error)
                return

    def mark(self, edge: str) -> None:
        """Read the device now and remember it as the measured region's `edge` ("start" or "stop")."""
        reading = self.probe.read()
        self.readings.append(reading)
        self.edges[edge] = reading

    def measured_energy_j(self) -> float | None:
        """Energy the device's counter advanced between the measured region's edges, where it has a counter."""
        start, stop = self.edges.get("start"), self.edges.get("stop")
        if start is None or stop is None or start.energy_j is None or stop.energy_j is None:
            return None
        return stop.energy_j - start.energy_j

    def stop(self) -> None:
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self.readings.append(self.probe.read())

    def summary(self) -> dict[str, float]:
        """Peak memory used (`mem_smi`), mean utilisation and power, and the energy the counter advanced: over the
        whole sampling (`device_energy_j`) and between the measured region's edges (`energy_j`)."""
        result: dict[str, float] = {}
        memory = [r.memory_used_gib for r in self.readings if r.memory_used_gib is not None]
        if memory:
            result[names.MEM_SMI] = max(memory)
        utilization = [r.utilization_pct for r in self.readings if r.utilization_pct is not None]
        if utilization:
            result[names.DEVICE_UTILIZATION_MEAN] = sum(utilization) / len(utilization)
        power = [r.power_w for r in self.readings if r.power_w is not None]
        if power:
            result[names.DEVICE_POWER_MEAN_W] = sum(power) / len(power)
        energy = [r.energy_j for r in self.readings if r.energy_j is not None]
        if len(energy) >= 2:
            result[names.DEVICE_ENERGY_J] = energy[-1] - energy[0]
        if (measured := self.measured_energy_j()) is not None:
            result[names.ENERGY_J] = measured
        return result

    def series(self) -> list[tuple[int, float, dict[str, float]]]:
        """(index, time, readings) per sample, for step metrics."""
        rows = []
        for index, reading in enumerate(sorted(self.readings, key=lambda r: r.time)):
            values = {name: value for name, value in ((names.DEVICE_MEMORY_USED_GIB, reading.memory_used_gib),
                                                      (names.DEVICE_UTILIZATION_PCT, reading.utilization_pct),
                                                      (names.DEVICE_POWER_W, reading.power_w)) if value is not None}
            if values:
                rows.append((index, reading.time, values))
        return rows
