"""Data parallelism over rays with torchrun: every GPU draws its own rays, gradients are averaged.

Run as ``torchrun --nproc_per_node N -m carrara.backend train ...``; with WORLD_SIZE unset (or 1) nothing here does
anything. Gradients are all-reduced by hand after ``backward`` instead of wrapping the model in DDP, because the
renderer calls the fields several times per step (up-sampling scans, taps, colour, background) and DDP expects one
forward per step. Only rank 0 writes checkpoints, previews and progress. The tests run this path on the CPU with
two gloo processes (``tests/backend/test_training_distributed.py``); WORLD_SIZE=1 runs the same code as a single
process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> "Distributed":
        """The torchrun environment; initialises NCCL (or gloo on CPU) once when more than one process runs."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(rank, world, local)

    def device(self, requested: str) -> str:
        """Each process takes the GPU of its local rank."""
        return f"cuda:{self.local_rank}" if self.enabled and requested.startswith("cuda") else requested

    def broadcast_module(self, module: torch.nn.Module) -> None:
        if self.enabled:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        if not self.enabled:
            return
        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(self.world_size)

    def agree(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's decision (stop, roll back) for every rank, so they never drift apart."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.broadcast(value, src=0)
        return bool(value.item() > 0.5)
