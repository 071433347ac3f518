"""MetaX C500 (MACA): a CUDA-compatible PyTorch build, with TF32 switched by the METAX_USE_TF32 env var.

MACA reads the switch when its runtime initialises, so it is not set here: `precision_env` names it, and the runner
puts it in place before the first device call (suite.runner.run_environment). `set_math_flags` only checks that it
is in effect and reports it.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from suite.errors import RunError
from suite.precision import REFERENCE_PRECISIONS, profile
from suite.vendors.cuda import CudaAdapter

TF32_ENV = "METAX_USE_TF32"


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
        # NVIDIA's CUDA/cuDNN/NCCL numbers do not describe a MACA build, and what MACA reports through
        # torch.version has not been seen on hardware here: record nothing rather than a guess.
        return {}

    def telemetry_probe(self, device: torch.device) -> Any | None:
        return None  # no NVML on MetaX; an mx-smi reader needs recorded output to be tested against first

    def _probe(self, index: int) -> Any | None:
        return None
