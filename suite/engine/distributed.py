"""This process's place in a distributed job (from torchrun's env vars) and the collectives the suite needs.

With world size 1 every operation is a local no-op, so single-process runs need no process group.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> DistContext:
        """Read RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE and GROUP_RANK as torchrun sets them."""
        env = os.environ if environ is None else environ
        return cls(rank=int(env.get("RANK", 0)), local_rank=int(env.get("LOCAL_RANK", 0)),
                   world_size=int(env.get("WORLD_SIZE", 1)),
                   local_world_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
                   node_rank=int(env.get("GROUP_RANK", 0)))


class Collectives:
    """Reductions across ranks through an initialised process group (or identities in a single process)."""

    def __init__(self, context: DistContext, device: torch.device) -> None:
        self.context = context
        # gloo reduces CPU tensors, nccl/xccl device tensors.
        self.device = device if dist.is_initialized() and dist.get_backend() != "gloo" else torch.device("cpu")

    def any_rank(self, flag: bool) -> bool:
        """Whether `flag` is set on any rank (so that every rank takes the same decision at the same step)."""
        if not self.context.distributed:
            return flag
        return self.max([1.0 if flag else 0.0])[0] > 0

    def barrier(self) -> None:
        if self.context.distributed:
            dist.barrier()

    def _reduce(self, values: Sequence[float], op: Any) -> list[float]:
        if not self.context.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=op)
        return tensor.tolist()

    def sum(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.MAX)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's object, in rank order, on every rank."""
        if not self.context.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.context.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's object on every rank (so all ranks take the same stopping decision)."""
        if not self.context.distributed:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]


def init_process_group(context: DistContext, backend: str, timeout_s: float) -> None:
    if context.distributed and not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
