"""Device telemetry sampled during training: a `Sampler` polls one device's probe (suite.vendors.probes) on a
background thread while the training phase runs, so the peak device memory the driver saw (`mem_smi`, what the
published pages read off their smi tools) sits next to the allocator's peak (`mem`), with power, utilisation,
temperature and the energy counter between the measured region's edges.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from suite import names
from suite.vendors.probes import DeviceProbe, DeviceReading

logger = logging.getLogger(__name__)


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
        temperature = [r.temperature_c for r in self.readings if r.temperature_c is not None]
        if temperature:
            result[names.DEVICE_TEMPERATURE_MAX_C] = max(temperature)
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
                                                      (names.DEVICE_POWER_W, reading.power_w),
                                                      (names.DEVICE_TEMPERATURE_C, reading.temperature_c))
                      if value is not None}
            if values:
                rows.append((index, reading.time, values))
        return rows
