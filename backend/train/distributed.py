"""Data parallelism over rays with torchrun: every GPU draws its own rays, gradients are averaged.

Started by ``carrara-backend train --gpus N`` (``backend/cli/launch.py`` re-executes the CLI under torchrun), by the
server for a job on a pool of GPUs (``backend/jobs/rank_pool.py``; both through ``launch.py``) or by hand as
``torchrun --nproc_per_node N -m carrara.backend train ...``; with WORLD_SIZE unset (or 1) nothing here does
anything. Each rank draws its share of the preset's rays per step (``share``), so N ranks take the steps of one GPU
with the same number of rays, and the run is the same length whatever N is. Gradients are all-reduced by hand after ``backward`` instead of wrapping the model in DDP, because the
renderer calls the fields several times per step (up-sampling scans, taps, colour, background) and DDP expects one
forward per step. Only rank 0 writes checkpoints, previews and progress. The tests run this path on the CPU with
two gloo processes (``tests/backend/test_training_distributed.py``); WORLD_SIZE=1 runs the same code as a single
process. A checkpoint holds rank 0's state only; on resume every other rank derives its random streams from it
(``split_generators``), so a run resumes on any number of ranks.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


#: "gloo" or "nccl"; the launcher sets it to gloo for CPU ranks on a machine that also has GPUs.
BACKEND_ENV = "CARRARA_DIST_BACKEND"
#: Gradients at least this large are reduced in place; smaller ones travel together in one flat buffer.
BUCKET_NUMEL = 1 << 20
#: The gloo group rank 0's decisions travel in, as CPU tensors: with NCCL a GPU tensor would make every step wait
#: for the GPU (a host sync the one-GPU run does not have). Made once per process, with the process group.
_CONTROL_GROUP: list[Any] = []


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
            backend = os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
            if backend == "nccl":
                torch.cuda.set_device(local)       # NCCL's own buffers go to this rank's GPU, not GPU 0
            dist.init_process_group(backend)
            _CONTROL_GROUP.append(dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD)
        return cls(rank, world, local)

    def share(self, total: int) -> int:
        """This rank's part of ``total`` (rays per step): the parts of all ranks add up to ``total``."""
        return total // self.world_size + (1 if self.rank < total % self.world_size else 0)

    def split_generators(self, *generators: torch.Generator) -> None:
        """After loading rank 0's random state from a checkpoint, give every other rank a stream of its own, so
        the ranks draw different rays on resume whatever number of ranks wrote the checkpoint."""
        if self.rank == 0:
            return
        for generator in generators:
            digest = hashlib.sha256(generator.get_state().cpu().numpy().tobytes() + self.rank.to_bytes(4, "little"))
            generator.manual_seed(int.from_bytes(digest.digest()[:8], "little") >> 1)

    def device(self, requested: str) -> str:
        """Each process takes the GPU of its local rank."""
        return f"cuda:{self.local_rank}" if self.enabled and requested.startswith("cuda") else requested

    def other_gpus(self, device: torch.device) -> list[str]:
        """The other ranks' GPUs on this host, which rank 0 may borrow once training is over (to extract the mesh)."""
        if not (self.enabled and device.type == "cuda"):
            return []
        return [f"cuda:{index}" for index in range(self.world_size) if index != self.local_rank]

    def broadcast_module(self, module: torch.nn.Module) -> None:
        if self.enabled:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        if not self.enabled:
            return
        # Large gradients (the hash table) in place, the many small ones in one flat buffer, all in flight at
        # once; a gradient one rank lacks (a parameter its rays never reached) counts as zeros there, so every
        # rank reduces the same tensors in the same order.
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        large = [p.grad for p in parameters if p.grad.numel() >= BUCKET_NUMEL]
        small = [p.grad for p in parameters if p.grad.numel() < BUCKET_NUMEL]
        flat = torch.cat([g.reshape(-1) for g in small]) if small else None
        pending = [dist.all_reduce(g, op=dist.ReduceOp.SUM, async_op=True) for g in large + ([flat] if small else [])]
        for work in pending:
            work.wait()
        for g in large:
            g.div_(self.world_size)
        if flat is not None:
            flat.div_(self.world_size)
            offset = 0
            for g in small:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()

    def least(self, value: int) -> int:
        """The smallest ``value`` over the ranks (free GPU memory), so every rank plans the same model and batch."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=_CONTROL_GROUP[0] if _CONTROL_GROUP else None)
        return int(tensor.item())

    def agree(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's decision (stop, roll back) for every rank, so they never drift apart."""
        if not self.enabled:
            return flag
        group = _CONTROL_GROUP[0] if _CONTROL_GROUP else None
        value = torch.tensor([1.0 if flag else 0.0], device="cpu" if group is not None else device)
        dist.broadcast(value, src=0, group=group)
        return bool(value.item() > 0.5)

    def close(self) -> None:
        """Leave the process group once this rank is done (torchrun warns about groups left open)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
