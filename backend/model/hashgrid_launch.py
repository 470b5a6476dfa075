"""How the Triton kernels launch: their shape, the one measured fastest, and where they may run.

Kept apart from ``hashgrid_triton`` so that the encoding module can name a launch without importing Triton.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .hashgrid_layout import HashGridConfig

# The largest gradient table (or slice) taken to stay in L2: two thirds of the H100's 50 MB (NOTES-encoding.md).
GRAD_PARTITION_BUDGET_BYTES = 32 * 2 ** 20


@dataclass(frozen=True)
class TritonLaunch:
    """Kernel shape: points per program, warps, and consecutive levels per program (1 = sweep level by level).

    ``merge_x_pairs`` / ``merge_x_pairs_forward``: x-neighbour entries 2k, 2k+1 as one 16-byte access in the
    backward / forward (F <= 2 only). ``grad_partitions``: the backward sweeps a level larger than
    ``partition_budget_bytes`` in that many passes, each over an L2-sized range of its entries (one level a program;
    the budget is a field so that tests can split tiny levels). What each measured: benchmarks/NOTES-encoding.md.
    """

    block: int = 256
    num_warps: int = 4
    levels_per_program: int = 1
    merge_x_pairs: bool = False
    merge_x_pairs_forward: bool = False
    grad_partitions: int = 1
    partition_budget_bytes: int = GRAD_PARTITION_BUDGET_BYTES

    def __post_init__(self) -> None:
        if self.block < 16 or self.block & (self.block - 1):
            raise ValueError(f"TritonLaunch.block must be a power of two >= 16, got {self.block}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"TritonLaunch.num_warps must be 1, 2, 4, 8 or 16, got {self.num_warps}")
        if self.levels_per_program < 1:
            raise ValueError(f"TritonLaunch.levels_per_program must be >= 1, got {self.levels_per_program}")
        if self.grad_partitions < 1 or self.grad_partitions & (self.grad_partitions - 1):
            raise ValueError(f"TritonLaunch.grad_partitions must be a power of two >= 1, got {self.grad_partitions}")
        if self.grad_partitions > 1 and self.levels_per_program > 1:
            raise ValueError("TritonLaunch.grad_partitions > 1 needs levels_per_program=1 (a pass is one level's "
                             f"entry range), got levels_per_program={self.levels_per_program}")
        if self.partition_budget_bytes < 0:
            raise ValueError(f"TritonLaunch.partition_budget_bytes must be >= 0, got {self.partition_budget_bytes}")

    @property
    def name(self) -> str:
        """A short name for results and test ids: ``b128_w4_lpp4`` plus ``_xpairs`` (merged in the backward, the
        name since version 1.1), ``_fwdxpairs`` (in the forward), ``_gradparts<P>`` and a non-default budget."""
        return (f"b{self.block}_w{self.num_warps}_lpp{self.levels_per_program}"
                + ("_xpairs" if self.merge_x_pairs else "") + ("_fwdxpairs" if self.merge_x_pairs_forward else "")
                + (f"_gradparts{self.grad_partitions}" if self.grad_partitions > 1 else "")
                + (f"_budget{self.partition_budget_bytes}"
                   if self.partition_budget_bytes != GRAD_PARTITION_BUDGET_BYTES else ""))


def measured_launch(config: HashGridConfig) -> TritonLaunch:
    """The kernel shape that ran fastest for this feature width in bench_encoding.py (H200, 2026-12-02; the numbers
    are in benchmarks/NOTES-encoding.md)."""
    if config.features_per_level <= 2:
        return TritonLaunch(block=128, num_warps=4, levels_per_program=4, merge_x_pairs=True,
                            merge_x_pairs_forward=True)
    return TritonLaunch(block=128, num_warps=4, levels_per_program=1, grad_partitions=4)


def triton_interpreter_enabled() -> bool:
    """Triton's CPU interpreter (TRITON_INTERPRET=1, read when triton is imported) runs kernels on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"
