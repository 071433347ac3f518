"""Kunlunxin R300 (XPU) through the `torch_xmlir` package, imported only when this adapter is used."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import ClassVar

import torch

from suite.errors import VendorUnavailableError
from suite.vendors.base import GIB, VendorAdapter

XMLIR_MODULE = "torch_xmlir"


class KunlunxinAdapter(VendorAdapter):
    name: ClassVar[str] = "kunlunxin"
    visible_devices_var: ClassVar[str | None] = "XPU_VISIBLE_DEVICES"
    # The published R300 runs are fp32 only; no autocast path for XPU is known to this suite.
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(self) -> None:
        self._xmlir: ModuleType | None = None

    @property
    def xmlir(self) -> ModuleType:
        if self._xmlir is None:
            try:
                self._xmlir = importlib.import_module(XMLIR_MODULE)
            except ImportError as e:
                raise VendorUnavailableError(
                    f"the kunlunxin adapter needs the {XMLIR_MODULE!r} package (Kunlunxin's PyTorch device "
                    f"plugin), which is not importable here: {e}") from e
        return self._xmlir

    def check_available(self) -> None:
        xpu = self.xmlir.xpu
        if xpu.device_count() == 0:
            raise VendorUnavailableError("torch_xmlir is installed but finds no XPU device on this machine")

    def device_count(self) -> int | None:
        return self.xmlir.xpu.device_count()

    def device(self, local_rank: int) -> torch.device:
        return self.xmlir.device(f"xpu:{local_rank}")

    def synchronize(self, device: torch.device) -> None:
        self.xmlir.xpu.synchronize(device)

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.xmlir.xpu.manual_seed_all(seed)

    def set_math_flags(self, precision: str) -> dict[str, str]:
        # What "fp32" means on XPU is decided by env vars (XDNN_CONV_GEMM_DTYPE, XACC_ARGS), recorded with the
        # run's accelerator.env; there are no torch switches to set.
        return {"autocast": "off"}

    def reset_peak_memory(self, device: torch.device) -> None:
        reset = getattr(self.xmlir.xpu, "reset_peak_memory_stats", None)
        if reset is not None:
            reset(device)

    def memory_gib(self, device: torch.device) -> dict[str, float]:
        xpu = self.xmlir.xpu
        memory: dict[str, float] = {}
        if hasattr(xpu, "max_memory_allocated"):
            memory["mem"] = xpu.max_memory_allocated(device) / GIB
        if hasattr(xpu, "max_memory_reserved"):
            memory["mem_reserved"] = xpu.max_memory_reserved(device) / GIB
        if hasattr(xpu, "get_device_properties"):
            memory["mem_total"] = xpu.get_device_properties(device).total_memory / GIB
        return memory

    def inventory(self) -> dict[str, str]:
        xpu = self.xmlir.xpu
        info = {"accelerator_count": str(xpu.device_count())}
        if hasattr(xpu, "get_device_properties") and xpu.device_count():
            props = xpu.get_device_properties(0)
            info["accelerator_model"] = str(getattr(props, "name", "Kunlunxin XPU"))
            info["accelerator_memory_gib"] = f"{props.total_memory / GIB:.1f}"
        return info
