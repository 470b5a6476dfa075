"""Multi-resolution hash-grid encoding (Instant-NGP, computed as tiny-cuda-nn computes it).

This module holds the configuration, the exact per-level layout, the plain PyTorch implementation (the oracle that
the Triton kernel is tested against, and the CPU path) and the ``HashGridEncoding`` module the fields call.

API (stable; the SDF and colour fields are built on it)::

    config = HashGridConfig(features_per_level=8, log2_hashmap_size=22)   # Neuralangelo's base.yaml otherwise
    encoding = HashGridEncoding(config, implementation="auto")            # "auto" | "triton" | "torch" | "tcnn"
    x01 = config.to_unit_cube(x_scene)                                    # scene cube `bounds` -> [0, 1]^3
    features = encoding(x01, active_levels)                               # (N, 3) -> (N, n_levels * F), float32

- Columns are level-major: level l fills columns [l*F, (l+1)*F). Levels >= ``active_levels`` (coarse-to-fine) are
  zeros and are not computed; ``None`` means all levels.
- Gradients flow to ``encoding.table`` only, first order: normals come from numerical differences, so positions
  that require grad raise an error instead of silently receiving zero.
- Each call's backward writes a table-sized gradient: give the numerical-gradient taps to one call, not five.

The function is tiny-cuda-nn's (float32 level scales, the 0.5 offset, dense or hashed levels, tcnn's table layout),
so tcnn's ``params`` load into ``table`` as they are; the conventions in full, and why each, are in
benchmarks/NOTES-encoding.md ("The encoding's conventions and the kernel's design").
"""
from __future__ import annotations

import functools
import importlib.util
import itertools
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

IMPLEMENTATIONS = ("auto", "triton", "torch", "tcnn")
HASH_PRIMES = (1, 2654435761, 805459861)   # Instant-NGP's; 1 on x keeps neighbours along x close in memory
_UINT32_MASK = 0xFFFFFFFF


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
    """The per-level layout, with tcnn's float32 scales (see the module docstring for why float32)."""
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


def vertex_index(vertex: torch.Tensor, level: GridLevel) -> torch.Tensor:
    """Entry of integer vertices (..., 3) within their level: dense row-major, or the uint32 spatial hash."""
    if level.hashed:
        index = torch.zeros_like(vertex[..., 0])
        for axis, prime in enumerate(HASH_PRIMES):
            index = index ^ ((vertex[..., axis] * prime) & _UINT32_MASK)   # uint32 wrap-around, as in tcnn
        return index & (level.size - 1)                                     # size is 2^T
    r = level.resolution
    return (vertex[..., 0] + r * vertex[..., 1] + r * r * vertex[..., 2]) % level.size


def encode_reference(x01: torch.Tensor, table: torch.Tensor, config: HashGridConfig,
                     active_levels: int | None = None) -> torch.Tensor:
    """The encoding written plainly: per level, the 8 cell vertices, their entries and trilinear weights.

    Weights and sums are in the dtype of ``table`` (float64 makes it the oracle), on any device; autograd gives
    the table gradient (and a position gradient, which the module refuses to expose; see the module docstring).
    """
    check_positions(x01)
    active = check_active_levels(active_levels, config.n_levels)
    features = table.view(-1, config.features_per_level)
    x = x01.float().clamp(0.0, 1.0).double()   # positions are float32 (as in tcnn and the kernels)
    corners = torch.tensor(list(itertools.product((0, 1), repeat=3)), device=x.device)   # (8, 3): +1 along x, y, z
    columns = []
    for level in grid_levels(config)[:active]:
        # tcnn's pos = fmaf(scale, x, 0.5f): one float32 rounding, exact from the float64 product
        pos = (x * level.scale + 0.5).float().to(table.dtype)
        lower = torch.floor(pos)
        frac = pos - lower
        lower = lower.long()
        # one gather of the 8 corners a level (one gradient buffer, not eight); index_select sums its backward
        # in a fixed order, so a resumed run repeats the table bit for bit
        vertices = lower[:, None, :] + corners                                     # (N, 8, 3)
        weights = torch.where(corners.bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(dim=2)
        entries = level.offset + vertex_index(vertices, level)                     # (N, 8)
        gathered = features.index_select(0, entries.reshape(-1)).view(*entries.shape, config.features_per_level)
        level_features = (weights[..., None] * gathered).sum(dim=1)
        columns.append(level_features)
    inactive = config.n_levels - active
    if inactive:
        columns.append(torch.zeros(x.shape[0], inactive * config.features_per_level, dtype=table.dtype,
                                   device=table.device))
    return torch.cat(columns, dim=1)


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


@functools.cache
def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreter_enabled() -> bool:
    """Triton's CPU interpreter (TRITON_INTERPRET=1, read when triton is imported) runs kernels on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class HashGridEncoding(torch.nn.Module):
    """The hash-grid encoding as a module: a flat table parameter and a choice of implementation."""

    def __init__(self, config: HashGridConfig | None = None, implementation: str = "auto",
                 launch: TritonLaunch | None = None) -> None:
        super().__init__()
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        self.config = config or HashGridConfig()
        self.implementation = implementation
        self.launch = launch or measured_launch(self.config)
        bound = self.config.init_range
        self.table = torch.nn.Parameter(torch.empty(self.config.n_params).uniform_(-bound, bound))
        # Held in a tuple so that tcnn's own module (and its parameter) stays out of ours and of state_dict.
        self._tcnn = (_TcnnGrid(self.config),) if implementation == "tcnn" else ()

    def implementation_for(self, device: torch.device) -> str:
        """Which implementation a call on ``device`` runs: auto is Triton on CUDA when it imports, else torch."""
        if self.implementation == "auto":
            return "triton" if device.type == "cuda" and triton_importable() else "torch"
        if self.implementation == "triton":
            if not triton_importable():
                raise RuntimeError("implementation='triton' needs the triton package (pip install triton), "
                                   "or use implementation='auto' or 'torch'")
            if device.type != "cuda" and not triton_interpreter_enabled():
                raise RuntimeError(f"implementation='triton' runs on CUDA tensors, got positions on {device}; "
                                   "use implementation='auto' or 'torch' on the CPU")
        if self.implementation == "tcnn" and device.type != "cuda":
            raise RuntimeError(f"implementation='tcnn' runs on CUDA tensors, got positions on {device}")
        return self.implementation

    def forward(self, x01: torch.Tensor, active_levels: int | None = None) -> torch.Tensor:
        check_positions(x01)
        active = check_active_levels(active_levels, self.config.n_levels)
        if x01.requires_grad and torch.is_grad_enabled():
            raise ValueError("HashGridEncoding gives no gradient with respect to positions; detach them (normals "
                             "come from numerical differences, Neuralangelo's 4-tap scheme)")
        implementation = self.implementation_for(x01.device)
        if implementation == "torch":
            return encode_reference(x01, self.table, self.config, active).float()
        if implementation == "triton":
            from . import hashgrid_triton
            return hashgrid_triton.encode(x01, self.table, self.config, active, self.launch)
        return self._tcnn[0](x01, self.table, active)

    def extra_repr(self) -> str:
        c = self.config
        return (f"levels={c.n_levels}, F={c.features_per_level}, T=2^{c.log2_hashmap_size}, "
                f"resolution={c.base_resolution}->{c.max_resolution}, implementation={self.implementation}")


class _TcnnGrid:
    """tinycudann's HashGrid run on our table (same layout), for users who ask for it and have it installed."""

    def __init__(self, config: HashGridConfig) -> None:
        try:
            import tinycudann
        except Exception as exc:   # a wheel built for another CUDA raises more than ImportError
            raise RuntimeError("implementation='tcnn' needs tinycudann, which does not import here "
                               f"({type(exc).__name__}: {exc}); use implementation='auto' (our Triton kernel, "
                               "the same function)") from exc
        encoding_config: dict[str, Any] = {
            "otype": "HashGrid", "n_levels": config.n_levels, "n_features_per_level": config.features_per_level,
            "log2_hashmap_size": config.log2_hashmap_size, "base_resolution": config.base_resolution,
            "per_level_scale": config.per_level_scale, "interpolation": "Linear"}
        self.module = tinycudann.Encoding(3, encoding_config, dtype=torch.float32)
        if self.module.params.numel() != config.n_params:
            raise RuntimeError(f"tinycudann lays out {self.module.params.numel()} parameters for this grid, we "
                               f"lay out {config.n_params}; use implementation='auto'")
        del self.module.params             # its own initial table (GPU memory the size of ours): ours replaces it
        self.n_levels = config.n_levels
        self.features_per_level = config.features_per_level

    def __call__(self, x01: torch.Tensor, table: torch.nn.Parameter, active_levels: int) -> torch.Tensor:
        self.module.params = table          # tcnn's forward reads self.params: ours, so gradients reach ours
        features = self.module(x01.float().clamp(0.0, 1.0))
        if active_levels < self.n_levels:   # tcnn computes every level; mask as Neuralangelo does
            mask = torch.zeros(features.shape[1], dtype=features.dtype, device=features.device)
            mask[: active_levels * self.features_per_level] = 1.0
            features = features * mask
        return features
