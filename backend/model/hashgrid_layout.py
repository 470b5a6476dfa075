"""The hash grid's shape and exact per-level layout, and what its positions must be: shared by the PyTorch
reference and the Triton kernels, so neither imports the other for it.

Float32 level scales and dense-or-hashed levels as tiny-cuda-nn lays them out (why: benchmarks/NOTES-encoding.md).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

HASH_PRIMES = (1, 2654435761, 805459861)   # Instant-NGP's; 1 on x keeps neighbours along x close in memory


@dataclass(frozen=True)
class HashGridConfig:
    """Hash-grid shape. Defaults are Neuralangelo's base.yaml (16 levels, 32 -> 2048, 2^22 x 8, range [-2, 2])."""

    n_levels: int = 16
    features_per_level: int = 8
    log2_hashmap_size: int = 22
    base_resolution: int = 32
    max_resolution: int = 2048
    bounds: tuple[float, float] = (-2.0, 2.0)   # the scene cube [lo, hi]^3 that maps onto [0, 1]^3
    init_range: float = 1e-4

    def __post_init__(self) -> None:
        if not 1 <= self.n_levels <= 32:
            raise ValueError(f"HashGridConfig.n_levels must be in 1..32, got {self.n_levels}")
        if self.features_per_level not in (1, 2, 4, 8):
            raise ValueError(f"HashGridConfig.features_per_level must be 1, 2, 4 or 8, got {self.features_per_level}")
        # 2^24 entries per level keeps every in-level index and its feature offset inside int32 in the kernels.
        if not 8 <= self.log2_hashmap_size <= 24:
            raise ValueError(f"HashGridConfig.log2_hashmap_size must be in 8..24, got {self.log2_hashmap_size}")
        if self.base_resolution < 2 or self.max_resolution < self.base_resolution:
            raise ValueError("HashGridConfig needs 2 <= base_resolution <= max_resolution, got "
                             f"{self.base_resolution} and {self.max_resolution}")
        if self.n_levels == 1 and self.max_resolution != self.base_resolution:
            raise ValueError("HashGridConfig with one level needs max_resolution == base_resolution")
        lo, hi = self.bounds
        if not lo < hi:
            raise ValueError(f"HashGridConfig.bounds must be (lo, hi) with lo < hi, got {self.bounds}")

    @property
    def per_level_scale(self) -> float:
        if self.n_levels == 1:
            return 1.0
        return math.exp((math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.n_levels - 1))

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.features_per_level

    @property
    def n_entries(self) -> int:
        last = grid_levels(self)[-1]
        return last.offset + last.size

    @property
    def n_params(self) -> int:
        return self.n_entries * self.features_per_level

    def to_unit_cube(self, x_scene: torch.Tensor) -> torch.Tensor:
        """Scene coordinates (the cube ``bounds``) to the encoding's [0, 1]^3."""
        lo, hi = self.bounds
        return (x_scene - lo) / (hi - lo)


@dataclass(frozen=True)
class GridLevel:
    """One level of the grid: where its entries live in the flat table and how a vertex finds its entry."""

    scale: float       # a float32 value: pos = scale * x + 0.5
    resolution: int    # vertices per axis, ceil(scale) + 1
    offset: int        # first entry of this level in the table
    size: int          # entries in this level (2^T when hashed)
    hashed: bool

    def cell_size(self, config: HashGridConfig) -> float:
        """Width of one grid cell in scene units (a natural step for numerical gradients at this level)."""
        lo, hi = config.bounds
        return (hi - lo) / self.scale


@functools.cache
def grid_levels(config: HashGridConfig) -> tuple[GridLevel, ...]:
    """The per-level layout, with tcnn's float32 scales (why float32: benchmarks/NOTES-encoding.md)."""
    f32 = np.float32
    log2_scale = f32(math.log2(f32(config.per_level_scale)))   # tcnn: std::log2 of the float per_level_scale
    levels = []
    offset = 0
    for level in range(config.n_levels):
        # tcnn's host code: exp2f of a float32 product; here the exact exp2, rounded once to float32
        growth = f32(2.0 ** float(f32(level) * log2_scale))
        scale = float(growth * f32(config.base_resolution) - f32(1.0))
        resolution = math.ceil(scale) + 1
        dense_entries = -(-resolution ** 3 // 8) * 8
        size = min(dense_entries, 1 << config.log2_hashmap_size)
        levels.append(GridLevel(scale=scale, resolution=resolution, offset=offset, size=size,
                                hashed=resolution ** 3 > size))
        offset += size
    return tuple(levels)


def check_active_levels(active_levels: int | None, n_levels: int) -> int:
    """``None`` means every level; anything else must be an int in 0..n_levels."""
    if active_levels is None:
        return n_levels
    if isinstance(active_levels, bool) or not isinstance(active_levels, (int, np.integer)):
        raise TypeError(f"active_levels must be an int or None, got {type(active_levels).__name__}")
    if not 0 <= active_levels <= n_levels:
        raise ValueError(f"active_levels must be in 0..{n_levels}, got {active_levels}")
    return int(active_levels)


def check_positions(x01: torch.Tensor) -> None:
    if not isinstance(x01, torch.Tensor) or x01.dim() != 2 or x01.shape[1] != 3:
        shape = tuple(x01.shape) if isinstance(x01, torch.Tensor) else type(x01).__name__
        raise ValueError(f"hash-grid positions must be a tensor of shape (N, 3) in [0, 1]^3, got {shape}")
    if not x01.is_floating_point():
        raise TypeError(f"hash-grid positions must be floating point, got {x01.dtype}")
