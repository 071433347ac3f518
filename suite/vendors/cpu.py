"""The host CPU as a device: the reference stand-in used by tests and the smoke demo.

`mem` is the process's peak resident memory and `mem_total` the host's memory, the nearest CPU analogue of a
device's allocator peak and capacity.
"""

from __future__ import annotations

import platform
import resource
import sys
from typing import ClassVar

import torch

from suite.names import GIB
from suite.precision import profile
from suite.vendors.base import VendorAdapter
from suite.vendors.host import cpu_model, host_memory_bytes


class CpuAdapter(VendorAdapter):
    name: ClassVar[str] = "cpu"
    # TF32 and fp16 autocast do not exist on CPU; claiming them would mislabel the math that ran.
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32", "amp_bf16", "amp_bf16_fast")
    fused_optimizer: ClassVar[bool] = True  # torch has CPU kernels for fused SGD/Adam/AdamW
    counts_devices: ClassVar[bool] = False

    def check_available(self) -> None:
        return None

    def device(self, local_rank: int) -> torch.device:
        return torch.device("cpu")

    def synchronize(self, device: torch.device) -> None:
        return None  # CPU ops are synchronous

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_math_flags(self, precision: str) -> dict[str, str]:
        return {
            "autocast": profile(precision).autocast_label,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "num_threads": str(torch.get_num_threads()),
        }

    def reset_peak_memory(self, device: torch.device) -> None:
        return None  # ru_maxrss cannot be reset; the peak covers the whole process

    def memory_gib(self, device: torch.device) -> dict[str, float]:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        peak = maxrss / GIB if sys.platform == "darwin" else maxrss * 1024 / GIB
        memory = {"mem": peak}
        total = host_memory_bytes()
        if total:
            memory["mem_total"] = total / GIB
        return memory

    def inventory(self) -> dict[str, str]:
        return {
            "accelerator_model": cpu_model() or platform.machine(),
            "accelerator_count": "1",
            "accelerator_memory_gib": f"{(host_memory_bytes() or 0) / GIB:.1f}",
        }

