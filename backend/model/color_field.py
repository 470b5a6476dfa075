"""The colour network (recipe §1.4): what a surface point looks like from a direction.

Inputs, in Neuralangelo's order: position (3), view direction as degree-3 spherical harmonics (16), unit normal
(3), the SDF's geometry feature, and optionally a per-photo appearance code (exposure and white balance differ
between photos of real captures). ReLU MLP with weight norm, sigmoid RGB in the photos' encoding (sRGB).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .encodings import SH_DIMS, spherical_harmonics


@dataclass(frozen=True)
class ColorFieldConfig:
    feature_dim: int = 256
    hidden: int = 256
    layers: int = 4
    appearance_dim: int = 0        # 0: no appearance code
    weight_norm: bool = True


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int, use_weight_norm: bool) -> nn.Sequential:
    """``layers`` hidden ReLU layers of ``hidden`` units, then a linear output."""
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers):
        linear = nn.Linear(dim, hidden)
        modules += [weight_norm(linear) if use_weight_norm else linear, nn.ReLU(inplace=True)]
        dim = hidden
    out = nn.Linear(dim, out_dim)
    modules.append(weight_norm(out) if use_weight_norm else out)
    return nn.Sequential(*modules)


class ColorField(nn.Module):
    def __init__(self, config: ColorFieldConfig):
        super().__init__()
        self.config = config
        in_dim = 3 + SH_DIMS + 3 + config.feature_dim + config.appearance_dim
        self.net = mlp(in_dim, config.hidden, config.layers, 3, config.weight_norm)

    def forward(self, points: torch.Tensor, view_dirs: torch.Tensor, normals: torch.Tensor, feature: torch.Tensor,
                appearance: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3) RGB in [0, 1]; ``view_dirs`` are unit vectors from the camera towards the point."""
        parts = [points, spherical_harmonics(view_dirs), normals, feature]
        if self.config.appearance_dim:
            if appearance is None:
                appearance = feature.new_zeros(feature.shape[0], self.config.appearance_dim)
            parts.append(appearance)
        inputs = torch.cat([p.to(feature.dtype) for p in parts], -1)
        return torch.sigmoid(self.net(inputs).float())
