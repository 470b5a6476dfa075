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
- Gradients flow to ``encoding.table`` only, first order. Positions get no gradient: Neuralangelo takes normals and
  curvature by 4-tap numerical differences (plain forward calls), so none is needed, and positions that require
  grad raise an error instead of silently receiving zero.
- Each call's backward writes a table-sized gradient (1.46 GB at F=8, T=22): give the numerical-gradient taps to
  one call (concatenated) rather than five.

Conventions, chosen so the function is tiny-cuda-nn's (a table trained with ``implementation="tcnn"`` gives the
same features on the CPU path, and tcnn's ``params`` load into ``table`` as they are):

- Level l has scale s_l = base * b**l - 1, b = exp((ln max - ln base) / (L - 1)), evaluated in float32 exactly as
  tcnn does. A coordinate x in [0, 1] sits at pos = s_l * x + 0.5; the lower vertex is floor(pos) and the
  trilinear weights come from pos - floor(pos). The 0.5 offset staggers the levels so their vertices do not line up
  at integer scale ratios (Instant-NGP, appendix A); nerfstudio's torch port dropped it (nerfstudio issue #1200),
  which made it a different function from tcnn's.
- Level l has R_l = ceil(s_l) + 1 vertices per axis. float32 matters: with the defaults s_5, s_10 and s_15 land
  just above 127, 511 and 2047, so R = 129, 513, 2049 (not 128, 512, 2048). That layout reproduces the parameter
  count Neuralangelo logs (366,708,076 in NVlabs/neuralangelo issue #24 = 365,792,384 hash + 915,692 MLP); the
  float64 formula gives 396,352 hash parameters fewer. (tcnn's kernels recompute s_l with the device's exp2f,
  within 2 ulp, so at those three levels tcnn's own features may differ from ours by that rounding.)
- Level l stores min(next multiple of 8 of R_l^3, 2^T) entries of F features. It is dense (index x + R*y + R*R*z,
  modulo the size) when R_l^3 fits, else hashed: (x*1 XOR y*2654435761 XOR z*805459861) modulo 2^32, then modulo
  2^T. tcnn decides "fits" with a uint32 stride that overflows to 0 when R^2 <= 2^T < R^3 and R^3 >= 2^32 (then it
  drops z); we decide with exact integers, which is the only place the two may differ.
- The far corner of the last half cell along an axis (vertex index R) wraps onto the next row in dense levels, as
  in tcnn. With the default bounds [-2, 2] the unit sphere (where the SDF lives) is far from those faces.
- x is a float32 clamped to [0, 1] (tcnn does not clamp; identical inside); NaN propagates to the features.
  pos is rounded to float32 once (tcnn's fmaf); weights and sums are in the table's dtype.
- ``table`` is one flat float32 parameter, level-major, then entry, then feature (tcnn's layout), initialised
  uniform in [-1e-4, 1e-4] like tcnn.
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
        # tcnn's pos = fmaf(scale, x, 0.5f): one float32 rounding. The float32 product is exact in float64, so
        # rounding the float64 result once reproduces it bit for bit (at scale 2047 the rounding moves a point
        # by up to 6e-5 of a cell: an oracle without it would differ from every float32 implementation).
        pos = (x * level.scale + 0.5).float().to(table.dtype)
        lower = torch.floor(pos)
        frac = pos - lower
        lower = lower.long()
        # the 8 corners gathered at once: one gather a level, so autograd (and torch.compile) keeps one
        # table-sized gradient buffer a level instead of eight (at F=8, T=2^22: 16 x 1.4 GB, not 128 x 1.4 GB).
        # index_select, not indexing: its CPU backward (index_add_) sums in a fixed order, so a resumed run
        # repeats the table bit for bit (indexing's accumulating index_put_ did not, on two CPU threads)
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


# The largest gradient table (or slice of one) whose random reductions are taken to stay in L2: two thirds of the
# H100's 50 MB (48 MiB; the H200 reports 60 MiB), a third left for the point and gradient streams beside. Levels
# up to 30 MB took theirs there in the H200 timings (NOTES-encoding.md); ``TritonLaunch.grad_partitions`` splits
# larger ones.
GRAD_PARTITION_BUDGET_BYTES = 32 * 2 ** 20


@dataclass(frozen=True)
class TritonLaunch:
    """Kernel shape: points per program, warps, and consecutive levels per program (1 = sweep level by level).

    ``merge_x_pairs``: in the backward, the two x-neighbours of a cell corner that fill one aligned pair of
    entries (about half of them) go out as one 16-byte reduction instead of two of 8 bytes (SASS for sm_90: 8
    ``REDG.E.ADD.F32x4`` beside 16 predicated ``F32x2`` per thread and level, against 16 ``F32x2``): about a
    quarter fewer reductions reach L2, for more instructions. Only at F <= 2: 16 bytes is the widest f32
    reduction, so at F=8 merging only doubles the instructions (64 ``F32x4`` against 32); it is ignored there.
    On the H200 it made F=2 fwd + bwd 15-19 % faster (``measured_launch`` uses it).

    ``merge_x_pairs_forward``: the same pairs in the forward, one 16-byte load (``LDG.E.128``) beside two
    predicated 8-byte ones, against two of 8 bytes; the features are bit for bit the unmerged forward's. A flag of
    its own (not ``merge_x_pairs`` for both kernels), so that the benchmark shows the forward's merge beside the
    backward's. Predicted: forward about 10 % faster (0-20 %): a quarter fewer L1 wavefronts and up to a quarter
    fewer L2 requests, for 26 % more instructions. Measured on the H200: forward 1.95 -> 1.73 ms for 2^21 points
    (lpp 4, +13 %), 2.10 -> 1.70 ms (lpp 1, +24 %); ignored at F > 2 as in the backward.

    ``grad_partitions`` (P, a power of two): in the backward, a level whose gradient table is larger than
    ``partition_budget_bytes`` is swept P times over the same points, pass p taking only the reductions into
    the p-th of P equal ranges of its entries (even bounds: a merged pair stays in its pass's range), so that the
    random read-modify-writes of a pass stay in an L2-sized slice instead of missing to HBM. Passes run in order
    (the grid is point blocks fastest, then the passes, level by level); a level that fits takes one pass and
    launches no more. Predicted at F=8, T=22 (levels 5-15 split, 65-128 MiB each): fwd + bwd 0.159 -> about
    0.19 G points/s for P=4 and 8 alike, the ceiling being the L2 reduction rate measured at F=2; at F=2, T=19
    no level is split: a control. Measured on the H200: 0.191 (P=4), 0.172 (P=8), the control unchanged.
    One level a program only (a pass is one level's range of entries).
    ``partition_budget_bytes`` exists so that tests can split tiny levels.
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
    """The kernel shape that ran fastest for this feature width in the encoding benchmark (fwd + bwd, H200,
    2026-12-02, benchmarks/results/encoding_nvidia-h200.json): at F <= 2, 128 points, 4 levels a program and the
    x pairs merged in both kernels, 0.544 G points/s against 0.513 with the backward's merge alone and 0.400 for
    the plain 256/1 shape; at F > 2, one level of 128 points with the backward of levels larger than L2 in 4
    passes, 0.191 G points/s at F=8 against 0.159 in one pass (8 passes: 0.172)."""
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
