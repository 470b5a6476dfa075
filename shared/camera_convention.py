"""The one place where camera conventions meet: COLMAP, OpenCV, OpenGL / transforms.json and Blender.

- COLMAP stores world->camera ``x_cam = R @ x_world + t`` with ``R`` as a (w, x, y, z) quaternion, camera axes
  OpenCV's (+x right, +y down, +z forward), pixel centres at +0.5 (the top-left pixel's centre is (0.5, 0.5)).
- OpenGL / instant-ngp / Neuralangelo ``transform_matrix`` and a Blender camera's matrix are camera->world with
  +x right, +y up, looking down -z: OpenCV's axes with y and z flipped.
- A Blender camera is a pinhole described by lens, sensor width, shift and the scene's resolution and pixel aspect.

Everything here is vectorised numpy so 1,000 cameras cost one call, and bpy-free so tests check it in plain pytest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Flips y and z: OpenCV camera axes <-> OpenGL/Blender camera axes (its own inverse).
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])

# Blender's default full-frame sensor; any width works, the lens scales with it.
DEFAULT_SENSOR_WIDTH_MM = 36.0


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices; normalises first."""
    q = np.asarray(qvec, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def rotmat_to_qvec(rotmat: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 4) quaternions (w, x, y, z) with w >= 0, stable for any rotation angle."""
    r = np.asarray(rotmat, np.float64)
    m00, m01, m02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    m10, m11, m12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    m20, m21, m22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # Shepperd's method: build the quaternion from its largest component, so no division by a tiny number.
    candidates = np.stack([
        np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], -2)
    diag = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def c2w_opencv_from_colmap(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP world->camera (qvec, tvec) -> (..., 4, 4) camera->world with OpenCV camera axes."""
    rot = qvec_to_rotmat(qvec)
    t = np.asarray(tvec, np.float64)
    c2w = np.zeros(rot.shape[:-2] + (4, 4))
    c2w[..., :3, :3] = np.swapaxes(rot, -1, -2)
    c2w[..., :3, 3] = -np.einsum("...ji,...j->...i", rot, t)
    c2w[..., 3, 3] = 1.0
    return c2w


def colmap_from_c2w_opencv(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 4, 4) camera->world with OpenCV axes -> COLMAP world->camera (qvec, tvec).

    The rotation is snapped to the nearest true rotation first (files store float32 matrices that are orthonormal
    to ~1e-7 only), and ``t`` is built from the snapped rotation so the camera centre is kept exactly.
    """
    m = np.asarray(c2w, np.float64)
    u, _, vt = np.linalg.svd(m[..., :3, :3])
    rot = np.swapaxes(u @ vt, -1, -2)
    tvec = -np.einsum("...ij,...j->...i", rot, m[..., :3, 3])
    return rotmat_to_qvec(rot), tvec


def opengl_from_opencv(c2w: np.ndarray) -> np.ndarray:
    """Camera->world with OpenCV camera axes <-> with OpenGL/Blender axes (the flip is its own inverse)."""
    m = np.array(c2w, np.float64, copy=True)
    m[..., :3, 1:3] *= -1.0
    return m


def c2w_opengl_from_colmap(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP pose -> the camera->world matrix a transforms.json frame or a Blender camera object holds."""
    return opengl_from_opencv(c2w_opencv_from_colmap(qvec, tvec))


def colmap_from_c2w_opengl(c2w: np.ndarray, atol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """A transforms.json / Blender camera->world matrix -> COLMAP (qvec, tvec); ValueError if not a rigid pose."""
    m = np.asarray(c2w, np.float64)
    if m.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"a camera-to-world matrix must be 4x4 or 3x4, not {m.shape[-2:]}")
    if not np.all(np.isfinite(m)):
        raise ValueError("the camera-to-world matrix holds NaN or infinite values")
    rot = m[..., :3, :3]
    gram = np.einsum("...ki,...kj->...ij", rot, rot)
    if not np.allclose(gram, np.eye(3), atol=atol) or not np.all(np.linalg.det(rot) > 0):
        raise ValueError("the camera-to-world rotation is not a proper rotation (scaled, sheared or mirrored)")
    full = np.zeros(m.shape[:-2] + (4, 4))
    full[..., :3, :] = m[..., :3, :]
    full[..., 3, 3] = 1.0
    return colmap_from_c2w_opencv(opengl_from_opencv(full))


def camera_centers(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """(..., 3) camera centres in world coordinates: ``-R^T t``."""
    rot = qvec_to_rotmat(qvec)
    return -np.einsum("...ji,...j->...i", rot, np.asarray(tvec, np.float64))


def viewing_directions(qvec: np.ndarray) -> np.ndarray:
    """(..., 3) unit optical axes (the camera's +z) in world coordinates."""
    return qvec_to_rotmat(qvec)[..., 2, :]


@dataclass(frozen=True)
class BlenderCameraIntrinsics:
    """What a Blender camera and its scene need to reproduce a pinhole camera exactly.

    The sensor fit is always HORIZONTAL so that lens and both shifts refer to the image width, portrait or not.
    """

    lens_mm: float
    sensor_width_mm: float
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    pixel_aspect_x: float
    pixel_aspect_y: float
    sensor_fit: str = "HORIZONTAL"


def blender_intrinsics(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                       sensor_width_mm: float = DEFAULT_SENSOR_WIDTH_MM) -> BlenderCameraIntrinsics:
    """Pinhole intrinsics (pixels, COLMAP's pixel-centre convention) -> Blender lens, shift and pixel aspect.

    Blender's frame spans the image corners (0, 0)..(W, H), exactly COLMAP's pixel coordinates, so the principal
    point needs no half-pixel correction. fx != fy becomes a non-square pixel: a pixel is 1/fx wide and 1/fy tall,
    so pixel_aspect_x : pixel_aspect_y = fy : fx (Blender wants both >= 1).
    """
    if width <= 0 or height <= 0 or fx <= 0 or fy <= 0:
        raise ValueError(f"a camera needs a positive size and focal length (got {width}x{height}, fx {fx}, fy {fy})")
    aspect_x, aspect_y = (1.0, fx / fy) if fx >= fy else (fy / fx, 1.0)
    ycor = fx / fy  # Blender's ycor = pixel_aspect_y / pixel_aspect_x
    return BlenderCameraIntrinsics(
        lens_mm=fx * sensor_width_mm / width,
        sensor_width_mm=sensor_width_mm,
        shift_x=(width / 2.0 - cx) / width,
        shift_y=(cy - height / 2.0) * ycor / width,
        resolution_x=int(width),
        resolution_y=int(height),
        pixel_aspect_x=aspect_x,
        pixel_aspect_y=aspect_y,
    )


def pinhole_from_blender(intrinsics: BlenderCameraIntrinsics) -> tuple[float, float, float, float]:
    """The inverse of ``blender_intrinsics``: Blender lens, shift and pixel aspect -> fx, fy, cx, cy in pixels."""
    if intrinsics.sensor_fit != "HORIZONTAL":
        raise ValueError(f"only the HORIZONTAL sensor fit is mapped, not {intrinsics.sensor_fit!r}")
    width, height = intrinsics.resolution_x, intrinsics.resolution_y
    fx = intrinsics.lens_mm * width / intrinsics.sensor_width_mm
    ycor = intrinsics.pixel_aspect_y / intrinsics.pixel_aspect_x
    fy = fx / ycor
    cx = width / 2.0 - intrinsics.shift_x * width
    cy = height / 2.0 + intrinsics.shift_y * width / ycor
    return fx, fy, cx, cy


def up_direction_from_cameras(qvec: np.ndarray) -> np.ndarray:
    """The world's likely "up": photographers hold cameras upright, so it is the mean of the cameras' -y axes."""
    up = -qvec_to_rotmat(qvec)[..., 1, :].reshape(-1, 3).mean(axis=0)
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])


def z_up_matrix(up: np.ndarray, center: np.ndarray) -> np.ndarray:
    """A 4x4 rigid map that turns ``up`` into +Z and puts ``center`` at the origin (for the root Empty only)."""
    a = np.asarray(up, np.float64) / np.linalg.norm(up)
    b = np.array([0.0, 0.0, 1.0])
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        rot = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        rot = np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ np.asarray(center, np.float64)
    return m
