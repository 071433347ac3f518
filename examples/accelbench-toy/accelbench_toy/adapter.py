"""The 'toy' adapter: a pretend NPU whose kernels run on the host CPU.

A real adapter wraps its vendor's torch device API (device(), synchronize(), memory, inventory, math flags); this one
reuses the CPU adapter's and changes what makes the toy NPU different: its name, its device-visibility variable,
the precisions it really supports, and how it describes itself in each run's environment record.
"""

from __future__ import annotations

import os
from typing import ClassVar

from suite.vendors.cpu import CpuAdapter


class ToyAdapter(CpuAdapter):
    name: ClassVar[str] = "toy"
    visible_devices_var: ClassVar[str | None] = "TOY_VISIBLE_DEVICES"
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # never claim math the device does not do

    def device_count(self) -> int | None:
        return int(os.environ.get("TOY_NPU_COUNT", "1"))

    def set_math_flags(self, precision: str) -> dict[str, str]:
        return {**super().set_math_flags(precision), "toy_kernels": "reference"}

    def inventory(self) -> dict[str, str]:
        return {**super().inventory(), "accelerator_model": "Toy NPU (simulated on the host CPU)",
                "toy_driver": "0.1"}
