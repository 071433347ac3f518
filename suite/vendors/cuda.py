"""NVIDIA GPUs through torch.cuda (also the base of CUDA-compatible stacks such as MetaX MACA)."""

from __future__ import annotations

import contextlib
import os
from types import ModuleType
from typing import Any, ClassVar

import torch

from suite.errors import VendorUnavailableError
from suite.names import GIB
from suite.precision import REFERENCE_PRECISIONS, profile
from suite.vendors.base import VendorAdapter


class CudaAdapter(VendorAdapter):
    name: ClassVar[str] = "cuda"
    visible_devices_var: ClassVar[str | None] = "CUDA_VISIBLE_DEVICES"
    supported_precisions: ClassVar[tuple[str, ...]] = (*REFERENCE_PRECISIONS, "amp_bf16_fast")
    fused_optimizer: ClassVar[bool] = True

    def __init__(self, device_module: Any | None = None) -> None:
        # Tests pass a small fake module with the torch.cuda functions used here.
        self._device_module = device_module

    @property
    def cuda(self) -> ModuleType | Any:
        return self._device_module if self._device_module is not None else torch.cuda

    @property
    def device_type(self) -> str:
        return "cuda"

    def check_available(self) -> None:
        if not self.cuda.is_available() or self.cuda.device_count() == 0:
            raise VendorUnavailableError(f"the {self.name} adapter needs a CUDA device, and torch.cuda finds none "
                                         f"on this machine (torch {torch.__version__})")

    def device_count(self) -> int | None:
        return self.cuda.device_count()

    def device(self, local_rank: int) -> torch.device:
        self.cuda.set_device(local_rank)
        return torch.device(self.device_type, local_rank)

    def synchronize(self, device: torch.device) -> None:
        self.cuda.synchronize(device)

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.cuda.manual_seed_all(seed)

    def precision_env(self, precision: str) -> dict[str, str]:
        """The switches that override torch's own TF32 flags, set to agree with the label: NVIDIA_TF32_OVERRIDE=0
        keeps every NVIDIA library off TF32 (any other value leaves the framework's choice), and
        TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 (set in some containers) would turn cuBLAS TF32 on behind fp32."""
        if profile(precision).tf32:
            return {"NVIDIA_TF32_OVERRIDE": "1"}
        return {"NVIDIA_TF32_OVERRIDE": "0", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "0"}

    def set_math_flags(self, precision: str) -> dict[str, str]:
        tf32 = profile(precision).tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        flags = {
            "matmul_tf32": str(torch.backends.cuda.matmul.allow_tf32).lower(),
            "cudnn_tf32": str(torch.backends.cudnn.allow_tf32).lower(),
            "autocast": profile(precision).autocast_label,
        }
        flags.update({name: os.environ.get(name, "unset") for name in self.precision_env(precision)})
        return flags

    def set_cudnn_flags(self, benchmark: bool, deterministic: bool) -> dict[str, str]:
        # The publisher's harness sets both on NVIDIA and MetaX (its vendors' helpers); the case's config says which.
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.deterministic = deterministic
        return {"cudnn_benchmark": str(torch.backends.cudnn.benchmark).lower(),
                "cudnn_deterministic": str(torch.backends.cudnn.deterministic).lower()}

    def reset_peak_memory(self, device: torch.device) -> None:
        self.cuda.reset_peak_memory_stats(device)

    def memory_gib(self, device: torch.device) -> dict[str, float]:
        return {
            "mem": self.cuda.max_memory_allocated(device) / GIB,
            "mem_reserved": self.cuda.max_memory_reserved(device) / GIB,
            "mem_total": self.cuda.get_device_properties(device).total_memory / GIB,
        }

    def inventory(self) -> dict[str, str]:
        count = self.cuda.device_count()
        if count == 0:
            return {"accelerator_count": "0"}
        props = self.cuda.get_device_properties(0)
        record = {
            "accelerator_model": props.name,
            "accelerator_count": str(count),
            "accelerator_memory_gib": f"{props.total_memory / GIB:.1f}",
        }
        record.update(self.runtime_versions())
        probe = self.device_probe(0)
        if probe is not None:
            record.update(probe.facts())
            probe.close()
        return record

    def runtime_versions(self) -> dict[str, str]:
        """The CUDA runtime, cuDNN and NCCL this torch build carries."""
        versions: dict[str, str] = {}
        if torch.version.cuda:
            versions["cuda_runtime"] = torch.version.cuda
        if torch.backends.cudnn.is_available() and (cudnn := torch.backends.cudnn.version()):
            # cuDNN 9 encodes 9.10.2 as 91002; cuDNN 8 encodes 8.9.2 as 8902.
            major, rest = (cudnn // 10000, cudnn % 10000) if cudnn >= 10000 else (cudnn // 1000, cudnn % 1000)
            versions["cudnn"] = f"{major}.{rest // 100}.{rest % 100}"
        with contextlib.suppress(Exception):  # a build without NCCL
            versions["nccl"] = ".".join(str(part) for part in torch.cuda.nccl.version())
        return versions

    def device_probe(self, index: int) -> Any | None:
        from suite.vendors.probes import NvmlProbe

        # Without a driver torch raises here; NVML then says for itself whether it can see the device.
        try:
            uuid = getattr(self.cuda.get_device_properties(index), "uuid", None)
        except (RuntimeError, AssertionError) as error:
            first_sentence = (str(error).split(". ")[0] or type(error).__name__)[:120]
            raise VendorUnavailableError(f"torch sees no CUDA device: {first_sentence}") from None
        return NvmlProbe.open(str(uuid) if uuid is not None else None, index)


    @property
    def pin_memory(self) -> bool:
        return True

