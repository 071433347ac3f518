"""What each precision label stands for: autocast dtype, TF32, memory format and optimizer implementation.

A run's precision label names everything about a step that changes its math or is a speed trick, so two runs with
the same label are comparable and two with different labels never land in one row. The reference labels change
only the math. `amp_bf16_fast` is amp_bf16's math with a faster profile: the model in channels_last memory format
and a fused (or foreach) optimizer step. It is its own label, never mixed with the reference amp_bf16 rows, and its
MFU is taken against the bf16 peak, since the tensor-core math is the same.

`fp32_conv_int16` is what the published Kunlunxin R300 Mask R-CNN rows ran under their page's "fp32": fp32 everywhere
except the convolutions' GEMMs, which `XDNN_CONV_GEMM_DTYPE=int16` runs in int16. A stack offers it only where such
a switch exists (the kunlunxin adapter sets it from the label), so a run's label says what math ran, as `tf32` does
for the A100's "fp32".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# No torch import at module level: the CLI's `list`, `show-config` and option parsing read the labels without
# paying for torch.


@dataclass(frozen=True)
class PrecisionProfile:
    name: str
    autocast: str | None                # torch dtype name for autocast ("bfloat16", "float16"); None: no autocast
    tf32: bool                          # TF32 matmuls/convolutions where the hardware has them
    peak_key: str                       # the accelerator.peak_tflops entry that bounds it (for MFU)
    channels_last: bool = False         # model parameters (and so activations) in NHWC memory format
    fast_optimizer: bool = False        # fused optimizer step where the adapter has one, foreach otherwise

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        import torch

        return getattr(torch, self.autocast) if self.autocast else None

    @property
    def memory_format(self) -> torch.memory_format:
        import torch

        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def autocast_label(self) -> str:
        return self.autocast or "off"


PROFILES: dict[str, PrecisionProfile] = {p.name: p for p in (
    PrecisionProfile("fp32", None, tf32=False, peak_key="fp32"),
    PrecisionProfile("tf32", None, tf32=True, peak_key="tf32"),
    PrecisionProfile("amp_bf16", "bfloat16", tf32=False, peak_key="amp_bf16"),
    PrecisionProfile("amp_fp16", "float16", tf32=False, peak_key="amp_fp16"),
    PrecisionProfile("amp_bf16_fast", "bfloat16", tf32=False, peak_key="amp_bf16", channels_last=True,
                     fast_optimizer=True),
    PrecisionProfile("fp32_conv_int16", None, tf32=False, peak_key="fp32_conv_int16"),
)}
PRECISIONS = tuple(PROFILES)
REFERENCE_PRECISIONS = ("fp32", "tf32", "amp_bf16", "amp_fp16")


def profile(precision: str) -> PrecisionProfile:
    return PROFILES[precision]
