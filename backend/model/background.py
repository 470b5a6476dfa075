"""NeRF++'s background for what lies outside the bounding sphere (recipe §1.8): outdoor and unmasked captures.

A point beyond the unit sphere is described by its direction and inverse distance, (x/|x|, 1/|x|), which maps
all of space outside the sphere into a bounded box; Fourier features of that feed a density MLP with a skip
connection, and a small head gives colour from its feature, the view direction and the appearance code.
Samples are spaced uniformly in inverse distance, so a background at any depth gets samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .color_field import mlp
from .encodings import SH_DIMS, fourier_features, spherical_harmonics


# what runs saved by a551634-4baf796 also wrote: the fields of a withdrawn hash-grid background
WITHDRAWN_FIELDS = ("grid_levels", "grid_features", "grid_log2_size", "grid_base_resolution",
                    "grid_max_resolution", "implementation")


@dataclass(frozen=True)
class BackgroundConfig:
    hidden: int = 256
    layers: int = 8
    skip: int = 4                  # the input re-enters after this many layers
    frequencies: int = 10
    color_hidden: int = 128
    color_layers: int = 2
    appearance_dim: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BackgroundConfig":
        """A saved run's background. Runs saved by a551634-4baf796 also wrote the fields of a hash-grid
        background, withdrawn after it measured 2 dB worse on the fox's held-out photos; their Fourier runs
        load without those fields, so no checkpoint of that time is stranded."""
        values = dict(data)
        encoding = values.pop("encoding", "fourier")
        if encoding != "fourier":
            raise ValueError(f"model.background.encoding is {encoding!r}: this run used a background Carrara no "
                             "longer has (withdrawn in issue 17); start the run again")
        for name in WITHDRAWN_FIELDS:
            values.pop(name, None)
        return cls(**values)

    @property
    def input_dim(self) -> int:
        return 4 * (1 + 2 * self.frequencies)


class Background(nn.Module):
    def __init__(self, config: BackgroundConfig):
        super().__init__()
        self.config = config
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

    def forward(self, points: torch.Tensor, view_dirs: torch.Tensor,
                appearance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) density per unit of inverse distance and (N, 3) RGB at points outside the unit sphere."""
        r = points.norm(dim=-1, keepdim=True).clamp_min(1.0)
        encoded = fourier_features(torch.cat((points / r, 1.0 / r), -1), self.config.frequencies)
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
