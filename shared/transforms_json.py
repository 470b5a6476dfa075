"""The instant-ngp / NeRF / Neuralangelo ``transforms.json`` vocabulary, read into and written from a Reconstruction.

Reading understands what the field writes: global or per-frame intrinsics (``fl_x``, ``fl_y``, ``cx``, ``cy``,
``w``, ``h``, ``k1``..``k4``, ``p1``, ``p2``, ``is_fisheye``), NeRF-synthetic files that give only
``camera_angle_x`` and extension-less ``file_path`` entries, and the bounds (``sphere_center``, ``sphere_radius``,
``aabb_range``, ``aabb_scale``). Frames whose photo is missing are skipped and listed, never silently dropped.

Writing produces what Neuralangelo's loader reads (``projects/neuralangelo/data.py``): global ``fl_x``, ``fl_y``,
``cx``, ``cy``, ``sk_x``, ``sk_y``, frames with ``file_path`` relative to the json's folder and an OpenGL
camera-to-world ``transform_matrix``, and ``sphere_center`` / ``sphere_radius``; plus ``w``, ``h``, distortion
keys, angles and ``aabb_*`` for instant-ngp and nerfstudio. JSON floats round-trip exactly.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera_convention import c2w_opengl_from_colmap, colmap_from_c2w_opengl
from .camera_models import FISHEYE_FAMILY, distortion_parameters, is_pinhole_equivalent, model_by_name, \
    pinhole_intrinsics
from .reconstruction import Camera, Image, Points3D, Reconstruction
from .sphere import BoundingSphere

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y",
                   "k1", "k2", "k3", "k4", "p1", "p2", "is_fisheye")
# Which transforms.json key holds each COLMAP distortion parameter, per model; instant-ngp's fisheye is OpenCV's
# (theta polynomial k1..k4), which COLMAP's radial fisheye models share. Other terms cannot be written.
_SAME = {name: name for name in ("k1", "k2", "k3", "k4", "p1", "p2")}
_JSON_DISTORTION = {
    "SIMPLE_RADIAL": {"k": "k1"}, "RADIAL": _SAME, "OPENCV": _SAME, "FULL_OPENCV": _SAME,
    "OPENCV_FISHEYE": _SAME, "SIMPLE_RADIAL_FISHEYE": {"k": "k1"}, "RADIAL_FISHEYE": _SAME,
    "THIN_PRISM_FISHEYE": {"k1": "k1", "k2": "k2", "k3": "k3", "k4": "k4"},
}


class TransformsError(ValueError):
    """A transforms.json that cannot be used; the message names the file and the field."""


@dataclass
class TransformsExtras:
    """What a transforms.json carries beyond cameras and poses, and what reading it found missing."""

    path: Path
    sphere: BoundingSphere | None = None
    aabb_range: np.ndarray | None = None        # (3, 2) [[xmin, xmax], [ymin, ymax], [zmin, zmax]]
    aabb_scale: float | None = None
    missing_files: list[str] = field(default_factory=list)   # file_path entries whose photo does not exist
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- reading


def find_transforms_file(path: str | Path) -> Path:
    """The json itself, or ``transforms.json`` (then ``transforms_train.json``) inside a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in ("transforms.json", "transforms_train.json"):
            if (path / name).is_file():
                return path / name
        raise TransformsError(f"{path}: no transforms.json or transforms_train.json in this folder")
    if not path.is_file():
        raise TransformsError(f"{path}: no such file")
    return path


def read_transforms(path: str | Path) -> tuple[Reconstruction, TransformsExtras]:
    """Read a transforms.json into COLMAP conventions; photos are looked up relative to the json's folder."""
    path = find_transforms_file(path)
    meta = _load_json(path)
    base = path.parent
    extras = TransformsExtras(path=path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise TransformsError(f"{path}: 'frames' must be a non-empty list of frames")
    cameras: dict[int, Camera] = {}
    camera_of: dict[tuple, int] = {}
    images: dict[int, Image] = {}
    for index, frame in enumerate(frames):
        where = f"frames[{index}]"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise TransformsError(f"{path}: {where} needs 'file_path' and 'transform_matrix'")
        image_path = _resolve_image(base, str(frame["file_path"]))
        if image_path is None:
            extras.missing_files.append(str(frame["file_path"]))
            continue
        try:
            qvec, tvec = colmap_from_c2w_opengl(np.array(frame["transform_matrix"], np.float64))
        except (ValueError, TypeError) as error:
            raise TransformsError(f"{path}: {where}.transform_matrix: {error}") from None
        camera = _camera_for(meta, frame, image_path, path, where)
        key = (camera.model, camera.width, camera.height, tuple(camera.params))
        if key not in camera_of:
            camera_of[key] = camera.camera_id = len(cameras) + 1
            cameras[camera.camera_id] = camera
        image_id = len(images) + 1
        name = Path(os.path.relpath(image_path, base)).as_posix()
        images[image_id] = Image(image_id, name, camera_of[key], qvec, tvec)
    if extras.missing_files:
        shown = ", ".join(extras.missing_files[:5]) + (" ..." if len(extras.missing_files) > 5 else "")
        extras.warnings.append(f"{len(extras.missing_files)} of {len(frames)} frames name photos that do not "
                               f"exist and were skipped: {shown}")
    if not images:
        raise TransformsError(f"{path}: none of the {len(frames)} frames' photos exist (looked relative to "
                              f"{base})")
    _read_bounds(meta, path, extras)
    rec = Reconstruction(cameras=cameras, images=images, points=Points3D(), model_dir=base, images_dir=base)
    return rec, extras


def _load_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise TransformsError(f"{path}: cannot read ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TransformsError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise TransformsError(f"{path}: the top level must be an object with 'frames'")
    return meta


def _resolve_image(base: Path, file_path: str) -> Path | None:
    """The photo a frame names, or None; NeRF-synthetic names "./train/r_0" for "train/r_0.png"."""
    candidate = Path(os.path.normpath(base / file_path))
    if candidate.is_file():
        return candidate
    if candidate.suffix not in _IMAGE_SUFFIXES:
        for suffix in _IMAGE_SUFFIXES:
            with_suffix = candidate.with_name(candidate.name + suffix)
            if with_suffix.is_file():
                return with_suffix
    return None


def _camera_for(meta: dict, frame: dict, image_path: Path, path: Path, where: str) -> Camera:
    """The frame's camera: per-frame keys override the file's global ones."""
    values = {key: frame.get(key, meta.get(key)) for key in _INTRINSIC_KEYS}
    for key, value in values.items():
        if value is not None and key != "is_fisheye" and not _finite(value):
            raise TransformsError(f"{path}: {where}: '{key}' must be a finite number, not {value!r}")
    width, height = values["w"], values["h"]
    if width is None or height is None:
        width, height = _image_size(image_path, path)
    width, height = int(width), int(height)
    fx = values["fl_x"]
    if fx is None:
        if values["camera_angle_x"] is None:
            raise TransformsError(f"{path}: {where}: neither 'fl_x' nor 'camera_angle_x' gives a focal length")
        fx = 0.5 * width / math.tan(0.5 * values["camera_angle_x"])
    fy = values["fl_y"]
    if fy is None:
        fy = 0.5 * height / math.tan(0.5 * values["camera_angle_y"]) if values["camera_angle_y"] else fx
    cx = width / 2.0 if values["cx"] is None else values["cx"]
    cy = height / 2.0 if values["cy"] is None else values["cy"]
    if fx <= 0 or fy <= 0 or width <= 0 or height <= 0:
        raise TransformsError(f"{path}: {where}: focal lengths and image size must be positive")
    k1, k2, k3, k4, p1, p2 = (float(values[k] or 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2"))
    if values["is_fisheye"]:
        model, params = "OPENCV_FISHEYE", [fx, fy, cx, cy, k1, k2, k3, k4]
    elif k3 or k4:
        model, params = "FULL_OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, 0.0, 0.0]
    elif k1 or k2 or p1 or p2:
        model, params = "OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2]
    else:
        model, params = "PINHOLE", [fx, fy, cx, cy]
    return Camera(0, model, width, height, np.array(params, np.float64))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _image_size(image_path: Path, path: Path) -> tuple[int, int]:
    """Width and height from a PNG or JPEG header, for files that leave out 'w' and 'h'."""
    try:
        with open(image_path, "rb") as file:
            head = file.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n":
                return struct.unpack(">II", head[16:24])
            if head[:2] == b"\xff\xd8":
                file.seek(2)
                while True:
                    marker, size = struct.unpack(">HH", file.read(4))
                    if 0xFFC0 <= marker <= 0xFFCF and marker not in (0xFFC4, 0xFFC8, 0xFFCC):
                        height, width = struct.unpack(">xHH", file.read(5))
                        return width, height
                    file.seek(size - 2, 1)
    except (OSError, struct.error):
        pass
    raise TransformsError(f"{path}: 'w' and 'h' are missing and the size of {image_path} could not be read")


def _read_bounds(meta: dict, path: Path, extras: TransformsExtras) -> None:
    if "sphere_center" in meta or "sphere_radius" in meta:
        try:
            extras.sphere = BoundingSphere(np.array(meta["sphere_center"], np.float64),
                                           float(meta["sphere_radius"]))
        except (KeyError, ValueError, TypeError) as error:
            raise TransformsError(f"{path}: 'sphere_center' / 'sphere_radius': {error}") from None
    if "aabb_range" in meta:
        aabb = np.array(meta["aabb_range"], np.float64)
        if aabb.shape != (3, 2) or not np.all(np.isfinite(aabb)) or np.any(aabb[:, 0] > aabb[:, 1]):
            raise TransformsError(f"{path}: 'aabb_range' must be [[xmin, xmax], [ymin, ymax], [zmin, zmax]]")
        extras.aabb_range = aabb
    if "aabb_scale" in meta:
        if not _finite(meta["aabb_scale"]):
            raise TransformsError(f"{path}: 'aabb_scale' must be a number")
        extras.aabb_scale = float(meta["aabb_scale"])


# ---------------------------------------------------------------------------------------------------- writing


def write_transforms(path: str | Path, rec: Reconstruction, sphere: BoundingSphere,
                     aabb: np.ndarray | None = None) -> list[str]:
    """Write ``rec`` as a transforms.json Neuralangelo trains from; returns warnings for the artist.

    ``path`` is the json file (or a folder to hold ``transforms.json``); photos are referenced relative to it.
    ``aabb`` (3, 2) defaults to the sphere's box.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    warnings: list[str] = []
    order = sorted(rec.images.values(), key=lambda im: im.name)
    if not order:
        raise TransformsError(f"{path}: there are no images to write")
    used = [rec.cameras[im.camera_id] for im in order]
    first = used[0]
    out: dict = _intrinsics_json(first, warnings)
    out.update(sk_x=0.0, sk_y=0.0)
    distinct = {(c.model, c.width, c.height, tuple(c.params)) for c in used}
    if len(distinct) > 1:
        warnings.append(f"The photos use {len(distinct)} different cameras. Neuralangelo reads only the global "
                        f"intrinsics (camera {first.camera_id}'s); each frame also carries its own for "
                        f"instant-ngp and nerfstudio.")
    if any(not is_pinhole_equivalent(c.model, c.params) for c in used):
        warnings.append("The cameras have lens distortion, which Neuralangelo ignores: undistort the photos "
                        "first (COLMAP image_undistorter) for an accurate mesh.")
    aabb = sphere.aabb() if aabb is None else np.asarray(aabb, np.float64)
    out.update(
        aabb_scale=float(np.clip(2.0 ** np.rint(np.log2(sphere.radius)), 1.0, 128.0)),
        aabb_range=aabb.tolist(),
        sphere_center=sphere.center.tolist(),
        sphere_radius=sphere.radius,
    )
    if rec.images_dir is None:
        warnings.append("The photos' folder is unknown; frames name them as 'images/<name>'.")
    qvec = np.array([im.qvec for im in order])
    tvec = np.array([im.tvec for im in order])
    matrices = c2w_opengl_from_colmap(qvec, tvec)
    frames = []
    for image, camera, matrix in zip(order, used, matrices):
        frame = {"file_path": _relative_file_path(path.parent, rec.images_dir, image.name),
                 "transform_matrix": matrix.tolist()}
        if len(distinct) > 1:
            frame.update(_intrinsics_json(camera, []))
        frames.append(frame)
    out["frames"] = frames
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return warnings


def _intrinsics_json(camera: Camera, warnings: list[str]) -> dict:
    model = model_by_name(camera.model)
    fx, fy, cx, cy = pinhole_intrinsics(camera.model, camera.params)
    out = {"camera_angle_x": 2.0 * math.atan(camera.width / (2.0 * fx)),
           "camera_angle_y": 2.0 * math.atan(camera.height / (2.0 * fy)),
           "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": camera.width, "h": camera.height,
           "k1": 0.0, "k2": 0.0, "k3": 0.0, "k4": 0.0, "p1": 0.0, "p2": 0.0,
           "is_fisheye": model.family == FISHEYE_FAMILY}
    keys = _JSON_DISTORTION.get(camera.model, {})
    dropped = []
    for name, value in distortion_parameters(camera.model, camera.params).items():
        if name in keys:
            out[keys[name]] = value
        elif value != 0.0:
            dropped.append(name)
    if dropped:
        warnings.append(f"Camera {camera.camera_id} ({camera.model}) has distortion terms transforms.json cannot "
                        f"hold ({', '.join(dropped)}); they are left out.")
    return out


def _relative_file_path(json_dir: Path, images_dir: Path | None, name: str) -> str:
    if images_dir is None:
        return f"images/{name}"
    return Path(os.path.relpath(Path(images_dir) / name, json_dir)).as_posix()
