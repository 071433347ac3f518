"""MetaX C500 (MACA): a CUDA-compatible PyTorch build, with TF32 switched by the METAX_USE_TF32 env var."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from suite.precision import REFERENCE_PRECISIONS
from suite.vendors.cuda import CudaAdapter

TF32_ENV = "METAX_USE_TF32"


class MetaxAdapter(CudaAdapter):
    name: ClassVar[str] = "metax"
    # The fast profile's fused kernels have not been seen working on MACA here: offer the reference labels only.
    supported_precisions: ClassVar[tuple[str, ...]] = REFERENCE_PRECISIONS
    fused_optimizer: ClassVar[bool] = False

    def set_math_flags(self, precision: str) -> dict[str, str]:
        # MACA reads the switch from the environment, so the variable must agree with the precision label.
        os.environ[TF32_ENV] = "1" if precision == "tf32" else "0"
        flags = super().set_math_flags(precision)
        flags[TF32_ENV] = os.environ[TF32_ENV]
        return flags

    def runtime_versions(self) -> dict[str, str]:
        # NVIDIA's CUDA/cuDNN/NCCL numbers do not describe a MACA build, and what MACA reports through
        # torch.version has not been seen on hardware here: record nothing rather than a guess.
        return {}

    def telemetry_probe(self, device: torch.device) -> Any | None:
        return None  # no NVML on MetaX; an mx-smi reader needs recorded output to be tested against first

    def _probe(self, index: int) -> Any | None:
        return None
