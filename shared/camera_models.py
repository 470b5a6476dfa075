"""Every camera model COLMAP defines: id, name, parameter names, and what kind of projection it is.

The ids and parameter orders are COLMAP's (``src/colmap/sensor/models.h``, ids 0-17 as of COLMAP 3.13 / pycolmap
4.2); the ids are what ``cameras.bin`` stores, the names what ``cameras.txt`` stores. A Blender camera is an ideal
pinhole, so the question that matters downstream is whether a camera *is* a pinhole once its parameters are known:
``is_pinhole_equivalent`` answers it, and ``pinhole_intrinsics`` gives fx, fy, cx, cy for any perspective model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Projection families. "pinhole": a perspective model whose distortion may be zero; "fisheye": an equidistant
# (or otherwise non-perspective) projection even with zero distortion; "spherical": no focal length at all.
PINHOLE_FAMILY = "pinhole"
FISHEYE_FAMILY = "fisheye"
SPHERICAL_FAMILY = "spherical"


@dataclass(frozen=True)
class CameraModel:
    """One COLMAP camera model: how its parameter vector is laid out."""

    model_id: int
    name: str
    param_names: tuple[str, ...]
    family: str

    @property
    def num_params(self) -> int:
        return len(self.param_names)

    @property
    def focal_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.param_names if n in ("f", "fx", "fy"))

    @property
    def distortion_names(self) -> tuple[str, ...]:
        """Parameters beyond focal length and principal point (COLMAP's "extra params")."""
        if self.family == SPHERICAL_FAMILY:
            return ()
        return tuple(n for n in self.param_names if n not in ("f", "fx", "fy", "cx", "cy"))


def _model(model_id: int, name: str, params: str, family: str = PINHOLE_FAMILY) -> CameraModel:
    return CameraModel(model_id, name, tuple(p.strip() for p in params.split(",")), family)


CAMERA_MODELS: tuple[CameraModel, ...] = (
    _model(0, "SIMPLE_PINHOLE", "f, cx, cy"),
    _model(1, "PINHOLE", "fx, fy, cx, cy"),
    _model(2, "SIMPLE_RADIAL", "f, cx, cy, k"),
    _model(3, "RADIAL", "f, cx, cy, k1, k2"),
    _model(4, "OPENCV", "fx, fy, cx, cy, k1, k2, p1, p2"),
    _model(5, "OPENCV_FISHEYE", "fx, fy, cx, cy, k1, k2, k3, k4", FISHEYE_FAMILY),
    _model(6, "FULL_OPENCV", "fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6"),
    _model(7, "FOV", "fx, fy, cx, cy, omega"),
    _model(8, "SIMPLE_RADIAL_FISHEYE", "f, cx, cy, k", FISHEYE_FAMILY),
    _model(9, "RADIAL_FISHEYE", "f, cx, cy, k1, k2", FISHEYE_FAMILY),
    _model(10, "THIN_PRISM_FISHEYE", "fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1", FISHEYE_FAMILY),
    _model(11, "RAD_TAN_THIN_PRISM_FISHEYE",
           "fx, fy, cx, cy, k0, k1, k2, k3, k4, k5, p0, p1, s0, s1, s2, s3", FISHEYE_FAMILY),
    _model(12, "SIMPLE_DIVISION", "f, cx, cy, k"),
    _model(13, "DIVISION", "fx, fy, cx, cy, k"),
    _model(14, "SIMPLE_FISHEYE", "f, cx, cy", FISHEYE_FAMILY),
    _model(15, "FISHEYE", "fx, fy, cx, cy", FISHEYE_FAMILY),
    _model(16, "EUCM", "fx, fy, cx, cy, alpha, beta"),
    _model(17, "EQUIRECTANGULAR", "w, h", SPHERICAL_FAMILY),
)

MODELS_BY_ID: dict[int, CameraModel] = {m.model_id: m for m in CAMERA_MODELS}
MODELS_BY_NAME: dict[str, CameraModel] = {m.name: m for m in CAMERA_MODELS}

# Parameters whose zero value makes the model an exact pinhole (EUCM's beta and FOV's omega are special:
# EUCM is a pinhole when alpha = 0 whatever beta is; FOV's omega = 0 is COLMAP's "no distortion" limit).
_PINHOLE_WHEN_ZERO_IGNORED = {"EUCM": ("beta",)}


def model_by_name(name: str) -> CameraModel:
    """The model called ``name`` (as cameras.txt spells it); KeyError names the known ones."""
    try:
        return MODELS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown COLMAP camera model {name!r} (known: {', '.join(MODELS_BY_NAME)})") from None


def model_by_id(model_id: int) -> CameraModel:
    """The model with COLMAP id ``model_id`` (as cameras.bin stores it)."""
    try:
        return MODELS_BY_ID[int(model_id)]
    except KeyError:
        raise KeyError(f"unknown COLMAP camera model id {model_id} (known: 0-{max(MODELS_BY_ID)})") from None


def pinhole_intrinsics(model_name: str, params: np.ndarray) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy in pixels (COLMAP's pixel-centre convention) for any perspective or fisheye model.

    For a distorted model these are the intrinsics of its undistorted pinhole core, not an undistortion.
    """
    model = model_by_name(model_name)
    if model.family == SPHERICAL_FAMILY:
        raise ValueError(f"camera model {model_name} is spherical: it has no focal length or principal point")
    values = dict(zip(model.param_names, (float(p) for p in params)))
    fx = values.get("fx", values.get("f"))
    fy = values.get("fy", values.get("f"))
    return fx, fy, values["cx"], values["cy"]


def distortion_parameters(model_name: str, params: np.ndarray) -> dict[str, float]:
    """The named distortion parameters of a camera (empty for SIMPLE_PINHOLE / PINHOLE)."""
    model = model_by_name(model_name)
    values = dict(zip(model.param_names, (float(p) for p in params)))
    return {name: values[name] for name in model.distortion_names}


def is_pinhole_equivalent(model_name: str, params: np.ndarray) -> bool:
    """True when the camera projects exactly like an ideal pinhole (so a Blender camera reproduces it).

    SIMPLE_PINHOLE and PINHOLE always are; a distorted perspective model is when its distortion is exactly zero;
    fisheye and spherical models never are.
    """
    model = model_by_name(model_name)
    if model.family != PINHOLE_FAMILY:
        return False
    ignored = _PINHOLE_WHEN_ZERO_IGNORED.get(model.name, ())
    return all(v == 0.0 for name, v in distortion_parameters(model_name, params).items() if name not in ignored)

