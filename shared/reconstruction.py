"""Format-neutral types for a posed photo set: what a COLMAP model or a transforms.json becomes once read.

Conventions (stated once, used everywhere):
- Poses are COLMAP's: ``x_cam = R @ x_world + t`` with the OpenCV camera frame (+x right, +y down, +z forward).
- ``qvec`` is COLMAP's (w, x, y, z) unit quaternion of R.
- Pixel coordinates follow COLMAP: the centre of the top-left pixel is (0.5, 0.5).
- Units are whatever the model's world uses (metres for measured rigs, arbitrary after SfM).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Camera:
    """One COLMAP camera (intrinsics shared by the images that name it)."""

    camera_id: int
    model: str                 # COLMAP model name, e.g. "PINHOLE", "OPENCV"
    width: int
    height: int
    params: np.ndarray         # float64, in COLMAP's order for the model


@dataclass
class Image:
    """One registered photo: its pose, its camera and its 2D observations."""

    image_id: int
    name: str                  # path relative to the images folder, as COLMAP stores it
    camera_id: int
    qvec: np.ndarray           # (4,) float64, w x y z, world -> camera rotation
    tvec: np.ndarray           # (3,) float64, world -> camera translation
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))              # (K, 2) float64 pixels
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (K,) int64, -1 = none


@dataclass
class Points3D:
    """The sparse point cloud as flat arrays (a million points must not be a million objects)."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))        # (N,) int64
    xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))             # (N, 3) float64
    rgb: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))   # (N, 3) uint8
    error: np.ndarray = field(default_factory=lambda: np.zeros(0))                # (N,) float64, px
    # Tracks, flattened: the observations of point i are track_*[track_offsets[i]:track_offsets[i + 1]].
    track_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))     # (N + 1,) int64
    track_image_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # (T,) int64
    track_point2d_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64)) # (T,) int64

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class Reconstruction:
    """A whole posed photo set; ``images_dir`` is where the photos were found, if anywhere."""

    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: Points3D
    model_dir: Path | None = None
    images_dir: Path | None = None
