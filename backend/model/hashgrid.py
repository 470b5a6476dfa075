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
from typing import Any

import torch

from .hashgrid_launch import TritonLaunch, measured_launch, triton_interpreter_enabled
from .hashgrid_layout import (HASH_PRIMES, GridLevel, HashGridConfig, check_active_levels, check_positions,
                              grid_levels)

IMPLEMENTATIONS = ("auto", "triton", "torch", "tcnn")
_UINT32_MASK = 0xFFFFFFFF


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


@functools.cache
def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


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
