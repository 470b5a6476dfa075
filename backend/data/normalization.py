"""The map between the input's world and the unit sphere the SDF lives in, kept exactly so meshes land in place.

Training sees the bounding sphere as the unit sphere: ``x_unit = (x_world - center) / radius``. The inverse,
``x_world = x_unit * radius + center``, is the only way back, and it travels with every checkpoint and mesh.
Neuralangelo re-centred cameras in one place and forgot it in another, so its meshes came out offset; here there
is one object that does both directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SphereNormalization:
    """Bounding sphere (input world coordinates) <-> unit sphere (training coordinates)."""

    center: tuple[float, float, float]
    radius: float

    def __post_init__(self) -> None:
        center = tuple(float(v) for v in np.asarray(self.center, np.float64).reshape(3))
        if not all(np.isfinite(center)) or not np.isfinite(self.radius) or self.radius <= 0:
            raise ValueError(f"sphere_center / sphere_radius: need three finite numbers and a radius above 0, "
                             f"got {center} and {self.radius}")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "radius", float(self.radius))

    def to_unit(self, points_world: np.ndarray) -> np.ndarray:
        return (np.asarray(points_world, np.float64) - np.asarray(self.center)) / self.radius

    def to_world(self, points_unit: np.ndarray) -> np.ndarray:
        return np.asarray(points_unit, np.float64) * self.radius + np.asarray(self.center)

    def c2w_to_unit(self, c2w_world: np.ndarray) -> np.ndarray:
        """(..., 4, 4) camera->world matrices in world units -> the same cameras in unit-sphere coordinates.

        Only the camera centre moves and scales; the rotation is unchanged, so rays keep their directions.
        """
        m = np.array(c2w_world, np.float64, copy=True)
        m[..., :3, 3] = self.to_unit(m[..., :3, 3])
        return m

    @property
    def to_world_affine(self) -> tuple[float, tuple[float, float, float]]:
        """(scale, offset) with ``x_world = x_unit * scale + offset``: what mesh extraction maps vertices with."""
        return self.radius, self.center

    def to_json(self) -> dict[str, Any]:
        return {"center": list(self.center), "radius": self.radius}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SphereNormalization":
        return cls(tuple(data["center"]), float(data["radius"]))
