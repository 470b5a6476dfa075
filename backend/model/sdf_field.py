"""The signed distance field: a multi-resolution hash grid and Neuralangelo's small MLP (recipe §1.2-1.3).

Layout: input = [x (3), hash features (L*F), inactive levels zeroed]; one hidden layer of ``hidden`` units with
softplus(beta=100); the SDF head reads that layer, and a second softplus layer of the same width makes the
geometry feature handed to the colour network, followed (``grid_in_feature``, our addition; measured in
``train/presets.py``) by the hash features themselves, so colour detail reaches the table without waiting for the
hidden layer's hash weights, which geometric initialisation starts at zero. Geometric initialisation makes the
field start as a sphere of radius ``init_radius`` (sign flipped for indoor scenes, where the cameras are inside
the free space).

The SDF path always runs in fp32: the 4-tap differences at eps ~ 1/4000 need about 1e-6 relative precision,
far beyond bf16 (or TF32), so mixed precision is applied only to the colour and background networks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..profiling import step_range
from .gradients import tetrahedron_derivatives, tetrahedron_points
from .hashgrid import HashGridConfig, HashGridEncoding, grid_levels, triton_importable

SOFTPLUS_BETA = 100.0


@dataclass(frozen=True)
class SdfFieldConfig:
    n_levels: int = 16
    features_per_level: int = 8
    log2_hashmap_size: int = 22
    base_resolution: int = 32
    max_resolution: int = 2048
    grid_bound: float = 1.05       # the grid spans [-grid_bound, grid_bound]^3: the unit sphere, with a margin for taps
    hidden: int = 256
    grid_in_feature: bool = True   # the geometry feature also carries the hash features (see the module docstring)
    init_radius: float = 0.5
    inside_out: bool = False
    weight_norm: bool = True
    # How the grid is computed, not what: every implementation reads one table layout (tiny-cuda-nn's, see
    # hashgrid.py), so it is left out of comparisons and a checkpoint of one loads into any other.
    encoding: str = field(default="auto", compare=False)

    def grid_config(self) -> HashGridConfig:
        return HashGridConfig(n_levels=self.n_levels, features_per_level=self.features_per_level,
                              log2_hashmap_size=self.log2_hashmap_size, base_resolution=self.base_resolution,
                              max_resolution=self.max_resolution, bounds=(-self.grid_bound, self.grid_bound))

    @property
    def feature_dim(self) -> int:
        return self.hidden + (self.n_levels * self.features_per_level if self.grid_in_feature else 0)

    def gradient_step(self, levels: int) -> float:
        """The 4-tap step for ``levels`` annealed levels: a quarter of that level's cell, in unit coordinates.

        With Neuralangelo's grid over [-2, 2] this is its 1 / res; our grid spans [-grid_bound, grid_bound].
        """
        config = self.grid_config()
        level = grid_levels(config)[max(1, min(levels, self.n_levels)) - 1]
        return level.cell_size(config) / 4.0


@dataclass
class SdfWithDerivatives:
    sdf: torch.Tensor          # (N,)
    feature: torch.Tensor      # (N, feature_dim)
    gradient: torch.Tensor     # (N, 3)
    laplacian: torch.Tensor    # (N,)


class SdfField(nn.Module):
    def __init__(self, config: SdfFieldConfig):
        super().__init__()
        self.config = config
        self.encoding = HashGridEncoding(config.grid_config(), implementation=config.encoding)
        in_dim = 3 + config.n_levels * config.features_per_level
        h = config.hidden
        self.hidden = nn.Linear(in_dim, h)
        self.head = nn.Linear(h, 1)
        self.feature_layer = nn.Linear(h, h)
        self._geometric_init()
        self.fused_head = True      # False: PyTorch's ops on a GPU too (the benchmark's baseline)
        if config.weight_norm:
            for name in ("hidden", "head", "feature_layer"):
                setattr(self, name, weight_norm(getattr(self, name)))

    @torch.no_grad()
    def _geometric_init(self) -> None:
        """Neuralangelo's init (mlp.py): a sphere of radius init_radius, hash inputs silent at first."""
        h = self.config.hidden
        nn.init.normal_(self.hidden.weight, 0.0, math.sqrt(2.0 / h))
        self.hidden.weight[:, 3:] = 0.0
        nn.init.zeros_(self.hidden.bias)
        nn.init.normal_(self.feature_layer.weight, 0.0, math.sqrt(2.0 / h))
        nn.init.zeros_(self.feature_layer.bias)
        nn.init.normal_(self.head.weight, math.sqrt(math.pi / h), 1e-4)
        nn.init.constant_(self.head.bias, -self.config.init_radius)
        if self.config.inside_out:
            self.head.weight.neg_()
            self.head.bias.neg_()

    def _pre_activation(self, x: torch.Tensor, active_levels: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden layer before its softplus, and the hash features."""
        with step_range("encoding"):
            grid = self.encoding(self.encoding.config.to_unit_cube(x), active_levels).to(x.dtype)
        with step_range("sdf_mlp"):
            return self.hidden(torch.cat((x, grid), -1)), grid

    def _sdf(self, z: torch.Tensor) -> torch.Tensor:
        """head(softplus(z)): one Triton kernel each way on a GPU (softplus_head_triton.py says why)."""
        with step_range("sdf_mlp"):
            if self.fused_head and z.is_cuda and triton_importable():
                from .softplus_head_triton import softplus_head
                return softplus_head(z, self.head.weight[0], self.head.bias, SOFTPLUS_BETA)
            return self.head(F.softplus(z, beta=SOFTPLUS_BETA)).squeeze(-1)

    def _feature(self, z: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        with step_range("sdf_mlp"):
            h = F.softplus(z, beta=SOFTPLUS_BETA)
            feature = F.softplus(self.feature_layer(h), beta=SOFTPLUS_BETA)
            return torch.cat((feature, grid), -1) if self.config.grid_in_feature else feature

    def sdf(self, x: torch.Tensor, active_levels: int | None = None) -> torch.Tensor:
        """(N, 3) unit-sphere points -> (N,) signed distances (negative inside)."""
        return self._sdf(self._pre_activation(x, active_levels)[0])

    def forward(self, x: torch.Tensor, active_levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) signed distances and (N, feature_dim) geometry features."""
        z, grid = self._pre_activation(x, active_levels)
        return self._sdf(z), self._feature(z, grid)

    def with_derivatives(self, x: torch.Tensor, eps: float, active_levels: int | None = None) -> SdfWithDerivatives:
        """SDF, feature, numerical gradient and Laplacian at x: one network pass over x and its 4 taps."""
        n = x.shape[0]
        with step_range("sdf_with_taps"):
            with step_range("numerical_gradient"):
                points = tetrahedron_points(x, eps)
            z, grid = self._pre_activation(points, active_levels)
            values = self._sdf(z)
            with step_range("numerical_gradient"):
                sdf, gradient, laplacian = tetrahedron_derivatives(values, eps)
            return SdfWithDerivatives(sdf, self._feature(z[:n], grid[:n]), gradient, laplacian)
