"""Where the surface may be: a coarse grid over the unit sphere's cube, refreshed from the SDF itself.

A cell is occupied when |SDF| at its centre is within the cell's half diagonal (times a safety factor, for a field
that is not yet a perfect distance) plus the width of NeuS's rendering band, ``BAND / inv_s``. Since the SDF is
close to 1-Lipschitz (the eikonal loss), any cell the surface crosses passes that test, so skipping the others
loses nothing that renders; deep-inside and far-outside space gets no samples. The renderer spends most of its
coarse samples in occupied cells (``sampling.py``), which is what lets short runs converge: the samples sit where
the gradients are, instead of 128 per ray spread over mostly empty space.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

DIAGONAL_FACTOR = 1.5     # slack over the exact half diagonal while |grad f| drifts from 1
BAND = 4.0                # NeuS's weight density s e^{-sx} / (1 + e^{-sx})^2 has ~96 % of its mass in |x| < 4 / s


class OccupancyGrid:
    def __init__(self, resolution: int, device: torch.device | str):
        self.resolution = int(resolution)
        self.device = torch.device(device)
        self.cell = 2.0 / self.resolution
        r = self.resolution
        index = torch.arange(r, device=self.device, dtype=torch.float32)
        coords = (index + 0.5) * self.cell - 1.0
        grid = torch.stack(torch.meshgrid(coords, coords, coords, indexing="ij"), -1).reshape(-1, 3)
        half_diagonal = math.sqrt(3.0) * self.cell / 2
        self._in_sphere = (grid.norm(dim=-1) <= 1.0 + half_diagonal).nonzero().squeeze(-1)
        self.occupied = torch.zeros(r ** 3, dtype=torch.bool, device=self.device)
        self.occupied[self._in_sphere] = True           # until the first update, everything may hold surface
        self.updates = 0

    def _centres(self, flat: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        ijk = torch.stack((flat // (r * r), (flat // r) % r, flat % r), -1).float()
        return (ijk + 0.5) * self.cell - 1.0

    @torch.no_grad()
    def update(self, sdf: Callable[[torch.Tensor], torch.Tensor], inv_s: float, batch: int = 1 << 18) -> None:
        threshold = DIAGONAL_FACTOR * math.sqrt(3.0) * self.cell / 2 + BAND / max(inv_s, 1e-3)
        occupied = torch.zeros_like(self.occupied)
        for start in range(0, self._in_sphere.numel(), batch):
            flat = self._in_sphere[start:start + batch]
            values = sdf(self._centres(flat))
            # NaN counts as occupied: the NaN guard deals with a broken field, sampling must not hide it.
            occupied[flat] = ~(values.abs() > threshold)
        self.occupied.copy_(occupied)     # in place: a captured training step reads this very tensor
        self.updates += 1

    def lookup(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (...) bool: whether each point lies in an occupied cell (False outside the grid)."""
        r = self.resolution
        ijk = torch.floor((points + 1.0) / self.cell).long()
        inside = ((ijk >= 0) & (ijk < r)).all(-1)
        ijk = ijk.clamp(0, r - 1)
        flat = (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2]
        return self.occupied[flat] & inside

    @property
    def fraction(self) -> float:
        """Occupied share of the cells inside the sphere (a health figure for logs and benchmarks)."""
        return float(self.occupied.sum()) / max(1, self._in_sphere.numel())

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"resolution": self.resolution, "occupied": self.occupied.cpu(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if int(state["resolution"]) != self.resolution:
            raise ValueError(f"occupancy grid resolution {state['resolution']} does not match {self.resolution}")
        self.occupied.copy_(state["occupied"])
        self.updates = int(state["updates"])
