"""MetaX C500 (MACA): a CUDA-compatible PyTorch build, with TF32 switched by the METAX_USE_TF32 env var."""

from __future__ import annotations

import os
from typing import ClassVar

from suite.vendors.cuda import CudaAdapter

TF32_ENV = "METAX_USE_TF32"


class MetaxAdapter(CudaAdapter):
    name: ClassVar[str] = "metax"

    def set_math_flags(self, precision: str) -> dict[str, str]:
        # MACA reads the switch from the environment, so the variable must agree with the precision label.
        os.environ[TF32_ENV] = "1" if precision == "tf32" else "0"
        flags = super().set_math_flags(precision)
        flags[TF32_ENV] = os.environ[TF32_ENV]
        return flags
