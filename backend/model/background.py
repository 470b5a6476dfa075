"""NeRF++'s background for what lies outside the bounding sphere (recipe §1.8): outdoor and unmasked captures.

A point beyond the unit sphere is described by its direction and inverse distance, which maps all of space
outside the sphere into a bounded region; samples are spaced uniformly in inverse distance, so a background at
any depth gets samples. Two encodings of that region feed the density MLP:

- ``fourier`` (the recipe): Fourier features of (x/|x|, 1/|x|) into an 8-layer MLP with a skip connection;
- ``hashgrid`` (ours, for short runs): a hash grid over the contracted point (2 - 1/|x|) x/|x|, which fills the
  shell between radius 1 and 2, into a small MLP. A wall or a room behind the object (most of a handheld photo's
  pixels) is detail the Fourier MLP learns over hundreds of thousands of iterations; a table learns it in a few
  thousand, as the SDF's own grid does.

A small head gives colour from the MLP's last layer, the view direction and the appearance code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .color_field import mlp
from .encodings import SH_DIMS, fourier_features, spherical_harmonics
from .hashgrid import HashGridConfig, HashGridEncoding

BACKGROUND_ENCODINGS = ("fourier", "hashgrid")
CONTRACTED_RADIUS = 2.0     # infinity maps onto this sphere


@dataclass(frozen=True)
class BackgroundConfig:
    hidden: int = 256
    layers: int = 8
    skip: int = 4                  # the input re-enters after this many layers (none when skip >= layers)
    frequencies: int = 10
    color_hidden: int = 128
    color_layers: int = 2
    appearance_dim: int = 0
    encoding: str = "fourier"      # one of BACKGROUND_ENCODINGS (see the module docstring)
    grid_levels: int = 16
    grid_features: int = 2
    grid_log2_size: int = 19
    grid_base_resolution: int = 16
    grid_max_resolution: int = 2048
    # the hash grid's implementation, as SdfFieldConfig.encoding: how, not what
    implementation: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        if self.encoding not in BACKGROUND_ENCODINGS:
            raise ValueError(f"background encoding must be one of {BACKGROUND_ENCODINGS}, not {self.encoding!r}")

    def grid_config(self) -> HashGridConfig:
        return HashGridConfig(n_levels=self.grid_levels, features_per_level=self.grid_features,
                              log2_hashmap_size=self.grid_log2_size, base_resolution=self.grid_base_resolution,
                              max_resolution=self.grid_max_resolution,
                              bounds=(-CONTRACTED_RADIUS, CONTRACTED_RADIUS))

    @property
    def input_dim(self) -> int:
        if self.encoding == "hashgrid":
            return self.grid_levels * self.grid_features
        return 4 * (1 + 2 * self.frequencies)


def contract(points: torch.Tensor) -> torch.Tensor:
    """Points outside the unit sphere -> the shell 1 <= |y| < 2: y = (2 - 1/|x|) x/|x| (points inside stay)."""
    r = points.norm(dim=-1, keepdim=True).clamp_min(1.0)
    return points / r * (CONTRACTED_RADIUS - 1.0 / r)


class Background(nn.Module):
    def __init__(self, config: BackgroundConfig):
        super().__init__()
        self.config = config
        self.encoding = (HashGridEncoding(config.grid_config(), implementation=config.implementation)
                         if config.encoding == "hashgrid" else None)
        in_dim = config.input_dim
        self.layers = nn.ModuleList()
        dim = in_dim
        for index in range(config.layers):
            if index == config.skip:
                dim += in_dim
            self.layers.append(nn.Linear(dim, config.hidden))
            dim = config.hidden
        self.density = nn.Linear(config.hidden, 1)
        self.color = mlp(config.hidden + SH_DIMS + config.appearance_dim, config.color_hidden,
                         config.color_layers, 3, use_weight_norm=False)

    def _encode(self, points: torch.Tensor) -> torch.Tensor:
        if self.encoding is not None:
            return self.encoding(self.encoding.config.to_unit_cube(contract(points.float())))
        r = points.norm(dim=-1, keepdim=True).clamp_min(1.0)
        return fourier_features(torch.cat((points / r, 1.0 / r), -1), self.config.frequencies)

    def forward(self, points: torch.Tensor, view_dirs: torch.Tensor,
                appearance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) density per unit of inverse distance and (N, 3) RGB at points outside the unit sphere."""
        encoded = self._encode(points)
        h = encoded
        for index, layer in enumerate(self.layers):
            if index == self.config.skip:
                h = torch.cat((h, encoded.to(h.dtype)), -1)
            h = F.relu(layer(h))
        density = F.softplus(self.density(h).float().squeeze(-1))
        parts = [h, spherical_harmonics(view_dirs).to(h.dtype)]
        if self.config.appearance_dim:
            if appearance is None:
                appearance = h.new_zeros(h.shape[0], self.config.appearance_dim)
            parts.append(appearance.to(h.dtype))
        return density, torch.sigmoid(self.color(torch.cat(parts, -1)).float())
