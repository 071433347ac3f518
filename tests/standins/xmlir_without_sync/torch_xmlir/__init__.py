"""Stand-in for a `torch_xmlir` build without `xpu.xpu_synchronize` (the suite must refuse it before a run)."""

from __future__ import annotations

import torch


def device(name: str) -> torch.device:
    return torch.device("cpu")


class _Xpu:
    def manual_seed_all(self, seed: int) -> None:
        return None


xpu = _Xpu()
