"""MetaX C500 (MACA): a CUDA-compatible PyTorch build, with TF32 switched by the METAX_USE_TF32 env var.

MACA reads the switch when its runtime initialises, so it is not set here: `precision_env` names it, and the runner
puts it in place before the first device call (suite.launch.checks.run_environment). `set_math_flags` only checks
that it is in effect and reports it. Telemetry and the driver/MACA versions come from MetaX's `pymxsml` binding where
it imports, else from the `mx-smi` tool (its table read by header, suite.vendors.smi); the MACA build of torch names
its MACA release in its version string (`2.6.0+metax3.3.0.x`).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from suite.errors import RunError
from suite.precision import REFERENCE_PRECISIONS, profile
from suite.vendors.cuda import CudaAdapter
from suite.vendors.probes import PymxsmlProbe, ToolCommand, ToolProbe, physical_index
from suite.vendors.smi import read_table

TF32_ENV = "METAX_USE_TF32"
MX_SMI = ToolCommand("mx-smi", ["mx-smi"], read_table, "mx-smi")


def maca_of_torch(version: str) -> str | None:
    """The MACA release a MetaX torch build names (`2.6.0+metax3.3.0.4` -> `3.3.0.4`), None for other builds."""
    local = version.partition("+")[2]
    return local.removeprefix("metax") if local.startswith("metax") else None


class MetaxAdapter(CudaAdapter):
    name: ClassVar[str] = "metax"
    # The fast profile's fused kernels have not been seen working on MACA here: offer the reference labels only.
    supported_precisions: ClassVar[tuple[str, ...]] = REFERENCE_PRECISIONS
    fused_optimizer: ClassVar[bool] = False

    def precision_env(self, precision: str) -> dict[str, str]:
        return {TF32_ENV: "1" if profile(precision).tf32 else "0"}

    def set_math_flags(self, precision: str) -> dict[str, str]:
        wanted = self.precision_env(precision)[TF32_ENV]
        in_effect = os.environ.get(TF32_ENV)
        if in_effect != wanted:  # the runtime would run other math than the label says
            raise RunError(f"{TF32_ENV} is {in_effect!r} in this process, but precision {precision} needs "
                           f"{wanted!r} before the device runtime starts")
        flags = super().set_math_flags(precision)
        flags[TF32_ENV] = in_effect
        return flags

    def runtime_versions(self) -> dict[str, str]:
        # NVIDIA's CUDA/cuDNN/NCCL numbers do not describe a MACA build; the build's own version string does.
        maca = maca_of_torch(torch.__version__)
        return {"torch_maca": maca} if maca else {}

    def device_probe(self, index: int) -> Any | None:
        physical = physical_index(index, self.visible_devices_var)
        return PymxsmlProbe.open(physical) or ToolProbe.open([MX_SMI], physical)
