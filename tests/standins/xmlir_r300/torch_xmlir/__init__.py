"""Stand-in for Kunlunxin's R200/R300-era `torch_xmlir`: exactly the calls public trainer code makes, on the CPU.

`calls` records every call in order, so a test can check where the suite synchronised and how it seeded.
"""

from __future__ import annotations

import torch

calls: list[str] = []


def device(name: str) -> torch.device:
    calls.append(f"device:{name}")
    return torch.device("cpu")


class _Xpu:
    def xpu_synchronize(self) -> None:
        calls.append("xpu_synchronize")

    def manual_seed_all(self, seed: int) -> None:
        calls.append(f"manual_seed_all:{seed}")

    def empty_cache(self) -> None:
        calls.append("empty_cache")


xpu = _Xpu()
