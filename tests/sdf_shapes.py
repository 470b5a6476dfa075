"""Analytic signed distances the mesh tests extract and compare against (exact, so tolerances mean something)."""
from __future__ import annotations

import torch


def torus(points: torch.Tensor, major: float = 0.5, minor: float = 0.2) -> torch.Tensor:
    """A torus around the z axis: ring radius ``major``, tube radius ``minor``."""
    ring = torch.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2) - major
    return torch.sqrt(ring ** 2 + points[:, 2] ** 2) - minor
