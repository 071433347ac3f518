"""Kunlunxin XPUs through the PyTorch stack that is installed, detected at start.

Two generations are public:
    torch_xmlir  the R200/R300-era plugin (the published R300 page's stack): `torch_xmlir.device("xpu:N")`,
                 `torch_xmlir.xpu.xpu_synchronize()`, `torch_xmlir.xpu.manual_seed_all(seed)`; no public code
                 reads device memory through it, so memory comes from the device tool
    torch.cuda   XPyTorch (P800 and later), which registers the XPU as a CUDA device
The path taken is recorded as the `math.kunlunxin_api` tag.

What "fp32" means on XPU is decided by environment variables, not torch switches: `XDNN_CONV_GEMM_DTYPE=int16` runs
the convolutions' GEMMs in int16 (the published R300 Mask R-CNN rows), so the adapter sets it from the precision
label `fp32_conv_int16` and refuses it under `fp32`; `XMLIR_D_FORCE_FALLBACK_STR` runs the named ops on the host
CPU (the published R300 RetinaNet rows), recorded as `math.cpu_fallback_ops`.

A function the stack lacks is a one-line error before any run exists, naming it. Telemetry comes from `xpu-smi -m`,
else the `xpu_smi` table (read by header), else the fields FlagPerf's published R300 recipe reads off it
(suite.vendors.smi).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, ClassVar

import torch

from suite.errors import RunError, VendorUnavailableError
from suite.names import GIB
from suite.vendors.base import VendorAdapter
from suite.vendors.probes import ToolCommand, ToolProbe, physical_index
from suite.vendors.smi import R300_PIPELINE, read_flagperf_r300_fields, read_table, read_xpu_smi_machine

CONV_GEMM_DTYPE_ENV = "XDNN_CONV_GEMM_DTYPE"  # int16: convolution GEMMs in int16 (fp32_conv_int16)
FALLBACK_ENV = "XMLIR_D_FORCE_FALLBACK_STR"  # comma-separated aten ops run on the host CPU
XMLIR_MODULE = "torch_xmlir"
API_XMLIR = "torch_xmlir"
API_CUDA = "torch.cuda"
# What a run calls on the R300-era plugin (FlagPerf's Kunlunxin trainer adapters call exactly these).
XMLIR_REQUIRED = ("device", "xpu.xpu_synchronize", "xpu.manual_seed_all")
XPU_TOOLS = (
    ToolCommand("xpu-smi -m", ["xpu-smi", "-m"], read_xpu_smi_machine, "xpu-smi"),
    ToolCommand("xpu_smi", ["xpu_smi"], read_table, "xpu_smi"),
    ToolCommand("xpu_smi (FlagPerf's R300 fields)", R300_PIPELINE, read_flagperf_r300_fields, "xpu_smi"),
)


def _has(module: Any, dotted: str) -> bool:
    target = module
    for part in dotted.split("."):
        if not hasattr(target, part):
            return False
        target = getattr(target, part)
    return callable(target)


class KunlunxinAdapter(VendorAdapter):
    name: ClassVar[str] = "kunlunxin"
    visible_devices_var: ClassVar[str | None] = "XPU_VISIBLE_DEVICES"
    # The published R300 runs are fp32, some with int16 convolution GEMMs; no autocast path for XPU is known here.
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp32_conv_int16")
    precision_variables: ClassVar[tuple[str, ...]] = (CONV_GEMM_DTYPE_ENV,)

    def __init__(self, cuda_module: Any | None = None) -> None:
        # Tests pass a stand-in for torch.cuda (the XPyTorch path); torch_xmlir is imported from sys.path.
        self._cuda_module = cuda_module
        self._xmlir: ModuleType | None = None
        self._api: str | None = None

    @property
    def cuda(self) -> Any:
        return self._cuda_module if self._cuda_module is not None else torch.cuda

    @property
    def api(self) -> str:
        """Which Kunlunxin stack this process has: torch_xmlir (R200/R300) or XPyTorch's torch.cuda."""
        if self._api is None:
            try:
                self._xmlir = importlib.import_module(XMLIR_MODULE)
                self._api = API_XMLIR
            except ImportError as error:
                if self.cuda.is_available() and self.cuda.device_count() > 0:
                    self._api = API_CUDA
                else:
                    raise VendorUnavailableError(
                        f"the kunlunxin adapter needs Kunlunxin's PyTorch: the {XMLIR_MODULE!r} plugin (R200/R300) "
                        f"is not importable ({error}), and torch.cuda finds no XPU (XPyTorch) either") from error
        return self._api

    @property
    def xmlir(self) -> Any:
        if self.api != API_XMLIR:
            raise VendorUnavailableError("torch_xmlir is not the stack in use")
        return self._xmlir

    def check_available(self) -> None:
        if self.api == API_XMLIR:
            missing = [f"{XMLIR_MODULE}.{name}" for name in XMLIR_REQUIRED if not _has(self._xmlir, name)]
            if missing:
                raise VendorUnavailableError(f"this {XMLIR_MODULE} lacks {', '.join(missing)}, which the kunlunxin "
                                             f"adapter calls (the R200/R300-era API)")
            count = self.device_count()
            if count == 0:
                raise VendorUnavailableError(f"{XMLIR_MODULE} is installed but no XPU is visible on this machine")

    def device_count(self) -> int | None:
        if self.api == API_CUDA:
            return self.cuda.device_count()
        if _has(self._xmlir, "xpu.device_count"):
            return int(self._xmlir.xpu.device_count())
        # The R300-era plugin has no public device count: the device tool's is the next best, else unknown.
        probe = self.device_probe(0)
        return len(probe.report.devices) if probe is not None else None

    def device(self, local_rank: int) -> torch.device:
        if self.api == API_CUDA:
            self.cuda.set_device(local_rank)
            return torch.device("cuda", local_rank)
        return self.xmlir.device(f"xpu:{local_rank}")

    def synchronize(self, device: torch.device) -> None:
        if self.api == API_CUDA:
            self.cuda.synchronize(device)
        else:
            self.xmlir.xpu.xpu_synchronize()

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        (self.cuda if self.api == API_CUDA else self.xmlir.xpu).manual_seed_all(seed)

    def precision_env(self, precision: str) -> dict[str, str]:
        return {CONV_GEMM_DTYPE_ENV: "int16"} if precision == "fp32_conv_int16" else {}

    def set_math_flags(self, precision: str) -> dict[str, str]:
        # No torch switches to set: the variables are in place before the runtime starts (checks.run_environment).
        # One inherited from the shell could still contradict the label, which must say what math ran.
        dtype = os.environ.get(CONV_GEMM_DTYPE_ENV)
        wanted = self.precision_env(precision).get(CONV_GEMM_DTYPE_ENV)
        if (dtype == "int16") != (wanted == "int16"):
            raise RunError(f"{CONV_GEMM_DTYPE_ENV} is {dtype!r} in this process, but precision {precision} "
                           f"{'needs int16' if wanted else 'is fp32 convolution math'}")
        flags = {"autocast": "off", "kunlunxin_api": self.api}
        if dtype is not None:
            flags[CONV_GEMM_DTYPE_ENV] = dtype
        fallback = os.environ.get(FALLBACK_ENV)
        if fallback:
            flags["cpu_fallback_ops"] = fallback
        return flags

    def reset_peak_memory(self, device: torch.device) -> None:
        module = self.cuda if self.api == API_CUDA else self.xmlir.xpu
        if _has(module, "reset_peak_memory_stats"):
            module.reset_peak_memory_stats(device)

    def memory_gib(self, device: torch.device) -> dict[str, float]:
        module = self.cuda if self.api == API_CUDA else self.xmlir.xpu
        memory: dict[str, float] = {}
        if _has(module, "max_memory_allocated"):
            memory["mem"] = module.max_memory_allocated(device) / GIB
        if _has(module, "max_memory_reserved"):
            memory["mem_reserved"] = module.max_memory_reserved(device) / GIB
        if _has(module, "get_device_properties"):
            memory["mem_total"] = module.get_device_properties(device).total_memory / GIB
        elif (probe := self.device_probe(device.index or 0)) is not None:
            total = probe.read().memory_total_gib  # the R300 page's "used/total" is the tool's total too
            if total is not None:
                memory["mem_total"] = total
        return memory

    def inventory(self) -> dict[str, str]:
        info: dict[str, str] = {"kunlunxin_api": self.api}
        count = self.device_count()
        if count is not None:
            info["accelerator_count"] = str(count)
        module = self.cuda if self.api == API_CUDA else self.xmlir.xpu
        if _has(module, "get_device_properties") and count:
            props = module.get_device_properties(0)
            info["accelerator_model"] = str(getattr(props, "name", "Kunlunxin XPU"))
            info["accelerator_memory_gib"] = f"{props.total_memory / GIB:.1f}"
        probe = self.device_probe(0)
        if probe is not None:
            info.update(probe.facts())
            reading = probe.read()
            if "accelerator_memory_gib" not in info and reading.memory_total_gib is not None:
                info["accelerator_memory_gib"] = f"{reading.memory_total_gib:.1f}"
        return info

    def device_probe(self, index: int) -> Any | None:
        return ToolProbe.open(XPU_TOOLS, physical_index(index, self.visible_devices_var))


    @property
    def pin_memory(self) -> bool:
        return self.api == API_CUDA
