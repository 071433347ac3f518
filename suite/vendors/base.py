"""The vendor adapter interface: device placement, synchronisation, math flags, autocast, memory and inventory."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from suite.errors import ConfigError
from suite.precision import REFERENCE_PRECISIONS, profile

NOT_APPLICABLE = "n/a"  # a math flag this stack does not have


class VendorAdapter(ABC):
    """What the trainer needs from an accelerator stack. Subclasses import vendor-only modules lazily."""

    name: ClassVar[str]
    visible_devices_var: ClassVar[str | None] = None
    supported_precisions: ClassVar[tuple[str, ...]] = REFERENCE_PRECISIONS
    fused_optimizer: ClassVar[bool] = False  # torch's fused optimizer kernels exist for this device type
    counts_devices: ClassVar[bool] = True  # False: processes, not devices, bound a topology (the CPU)
    # Variables only the precision label may set (accelerator.env may not contradict it): besides those
    # `precision_env` returns, the ones a label sets on some precisions and must stay unset on the others.
    precision_variables: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def check_available(self) -> None:
        """Raise VendorUnavailableError (one line, exit 2) when the stack or a device is missing."""

    def check_precision(self, precision: str) -> None:
        if precision not in self.supported_precisions:
            raise ConfigError(f"precision {precision!r} is not supported by the {self.name} adapter "
                              f"(supported: {', '.join(self.supported_precisions)})", key="train.precision")

    @abstractmethod
    def device(self, local_rank: int) -> torch.device: ...

    def device_count(self) -> int | None:
        """Devices on this node; None where processes, not devices, are the limit (the CPU)."""
        return None

    @abstractmethod
    def synchronize(self, device: torch.device) -> None:
        """Block until all queued work on `device` is done (called at both edges of every timed window)."""

    @abstractmethod
    def manual_seed(self, seed: int) -> None: ...

    def precision_env(self, precision: str) -> dict[str, str]:
        """Environment variables a precision implies on this stack (read when its runtime initialises).

        The runner puts them in place, with `accelerator.env`, before the first device call and for the run's
        duration only; they are recorded with the run (`env.var.*`, `math.*`).
        """
        return {}

    @abstractmethod
    def set_math_flags(self, precision: str) -> dict[str, str]:
        """Apply the math switches a precision implies and return the flags actually in effect."""

    def set_cudnn_flags(self, benchmark: bool, deterministic: bool) -> dict[str, str]:
        """Apply cuDNN's algorithm choice (`train.cudnn_*`) where the stack has cuDNN; return the flags in effect.

        A stack without cuDNN reports them as not applicable: the config's values did not run there.
        """
        return {"cudnn_benchmark": NOT_APPLICABLE, "cudnn_deterministic": NOT_APPLICABLE}

    @contextlib.contextmanager
    def autocast(self, device: torch.device, precision: str) -> Iterator[None]:
        dtype = profile(precision).autocast_dtype
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield

    def grad_scaler(self, device: torch.device, precision: str) -> Any | None:
        """fp16 autocast needs loss scaling; every other precision trains unscaled."""
        if profile(precision).autocast_dtype != torch.float16:
            return None
        return torch.amp.GradScaler(device.type)

    def optimizer_options(self, precision: str) -> dict[str, bool]:
        """Keyword arguments for the torch.optim optimizer: {} leaves torch's own choice (the reference)."""
        if not profile(precision).fast_optimizer:
            return {}
        return {"fused": True} if self.fused_optimizer else {"foreach": True}

    @abstractmethod
    def reset_peak_memory(self, device: torch.device) -> None: ...

    @abstractmethod
    def memory_gib(self, device: torch.device) -> dict[str, float]:
        """Peak allocated (`mem`), peak reserved and device total, in GiB; keys absent where unknown."""

    @abstractmethod
    def inventory(self) -> dict[str, str]:
        """Accelerator model, count and memory per device for the environment record."""

    def device_probe(self, index: int) -> Any | None:
        """A `suite.engine.telemetry.DeviceProbe` for this process's device `index` (mapped to the physical device the
        vendor's library or tool lists), or None where the vendor exposes no telemetry here."""
        return None

    def telemetry_probe(self, device: torch.device) -> Any | None:
        return self.device_probe(device.index or 0)

    @property
    def pin_memory(self) -> bool:
        return False

    def dataloader_device_args(self) -> dict[str, Any]:
        return {"pin_memory": self.pin_memory}
