"""A posed photo set ready to train on: read once through ``shared/``, checked, normalised to the unit sphere.

Everything that would stop training hours in is found here, before the first iteration, and named: a missing or
unreadable photo, a photo whose size is not its camera's, a NaN pose (the shared readers refuse those), a
distorted camera model (train on undistorted photos), a bounding sphere no camera sees. Photos are not decoded here (``images.py`` does that within
a memory budget); only their headers are read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from ...shared.camera_convention import c2w_opencv_from_colmap
from ...shared.camera_models import SPHERICAL_FAMILY, is_pinhole_equivalent, model_by_name, pinhole_intrinsics
from ...shared.colmap import ColmapError, read_model
from ...shared.reconstruction import Reconstruction
from ...shared.sphere import BoundingSphere, estimate_sphere
from ...shared.transforms_json import TransformsError, find_transforms_file, read_transforms
from ..render.rays import camera_rays, intersect_unit_sphere
from .normalization import SphereNormalization

# Held-out views: one photo in HOLDOUT_EVERY, at most MAX_HOLDOUT, only when at least MIN_VIEWS_FOR_HOLDOUT remain.
HOLDOUT_EVERY = 10
MAX_HOLDOUT = 8
MIN_VIEWS_FOR_HOLDOUT = 20
_VISIBILITY_GRID = 9          # rays per image side tested against the sphere
_PROBLEMS_SHOWN = 5


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message names the file or setting and what to do."""


@dataclass(frozen=True)
class View:
    """One photo as training sees it: size and intrinsics after downscaling, pose in unit-sphere coordinates."""

    name: str
    path: Path
    width: int
    height: int
    intrinsics: tuple[float, float, float, float]   # fx, fy, cx, cy in pixels of the (downscaled) photo
    c2w: np.ndarray                                 # (4, 4) float64 camera->unit sphere, OpenCV axes
    has_alpha: bool


@dataclass
class PosedDataset:
    views: list[View]
    train: list[int]                  # indices into views
    validation: list[int]
    validation_held_out: bool         # False: too few photos, validation uses training views
    normalization: SphereNormalization
    use_alpha: bool                   # every photo has an alpha channel: it is used as a mask
    source: Path
    scene_type: str
    warnings: list[str] = field(default_factory=list)


def read_reconstruction(path: Path) -> tuple[Reconstruction, BoundingSphere | None, list[str]]:
    """The one COLMAP reader or the one transforms.json reader; also the file's sphere and its warnings."""
    path = Path(path).expanduser()
    try:
        if path.suffix.lower() == ".json" or (path.is_dir() and _has_transforms(path)):
            rec, extras = read_transforms(path)
            return rec, extras.sphere, list(extras.warnings)
        return read_model(path), None, []
    except (ColmapError, TransformsError) as exc:
        raise DatasetError(str(exc)) from None


def _has_transforms(folder: Path) -> bool:
    try:
        find_transforms_file(folder)
        return True
    except TransformsError:
        return False


def dataset_sphere(path: Path, scene_type: str) -> BoundingSphere:
    """The sphere to train in when none was given: the file's own (transforms.json), else the fitted one."""
    rec, sphere, _ = read_reconstruction(path)
    return sphere if sphere is not None else estimate_sphere(rec, scene_type)


def load_dataset(path: Path, *, sphere: BoundingSphere | None = None, scene_type: str = "object",
                 downscale: float = 1.0) -> PosedDataset:
    """Read, check and normalise a dataset; raises DatasetError naming the first problems found."""
    path = Path(path).expanduser()
    if not math.isfinite(downscale) or downscale < 1:
        raise DatasetError(f"downscale must be a number of at least 1, not {downscale!r}")
    rec, file_sphere, warnings = read_reconstruction(path)
    _check_cameras(rec, path)
    if rec.images_dir is None:
        raise DatasetError(f"{rec.model_dir or path}: no folder holding the photos was found (looked for images/ "
                           "next to the model and up to three folders above it)")
    images = sorted(rec.images.values(), key=lambda im: im.name)
    alpha = _check_photos(images, rec)
    if sphere is None:
        sphere = file_sphere if file_sphere is not None else estimate_sphere(rec, scene_type)
    normalization = SphereNormalization(tuple(sphere.center), sphere.radius)
    views = []
    for image, has_alpha in zip(images, alpha):
        camera = rec.cameras[image.camera_id]
        fx, fy, cx, cy = pinhole_intrinsics(camera.model, camera.params)
        width = max(1, round(camera.width / downscale))
        height = max(1, round(camera.height / downscale))
        sx, sy = width / camera.width, height / camera.height   # exact: image corners map to corners
        c2w = normalization.c2w_to_unit(c2w_opencv_from_colmap(image.qvec, image.tvec))
        views.append(View(image.name, rec.images_dir / image.name, width, height,
                          (fx * sx, fy * sy, cx * sx, cy * sy), c2w, has_alpha))
    views, blind = _keep_views_seeing_sphere(views, normalization)
    if blind:
        warnings.append(f"{len(blind)} photo(s) do not see the bounding sphere and are left out: "
                        + ", ".join(blind[:_PROBLEMS_SHOWN]) + (" ..." if len(blind) > _PROBLEMS_SHOWN else ""))
    use_alpha = all(v.has_alpha for v in views)
    if not use_alpha and any(v.has_alpha for v in views):
        warnings.append("only some photos have an alpha channel; alpha is ignored (give all or none a mask)")
    train, validation, held_out = split_views(len(views))
    return PosedDataset(views, train, validation, held_out, normalization, use_alpha, path, scene_type, warnings)


def split_views(count: int) -> tuple[list[int], list[int], bool]:
    """Evenly spaced held-out photos for validation PSNR; with few photos every photo trains."""
    if count < MIN_VIEWS_FOR_HOLDOUT:
        return list(range(count)), list(range(0, count, max(1, count // 4)))[:4], False
    n_val = min(MAX_HOLDOUT, count // HOLDOUT_EVERY)
    validation = sorted({int(round((k + 0.5) * count / n_val)) for k in range(n_val)})
    validation = [v for v in validation if v < count]
    held = set(validation)
    return [i for i in range(count) if i not in held], validation, True


def _check_cameras(rec: Reconstruction, path: Path) -> None:
    where = rec.model_dir or path
    used = {im.camera_id for im in rec.images.values()}
    for camera_id in sorted(used):
        camera = rec.cameras[camera_id]
        model = model_by_name(camera.model)
        if model.family == SPHERICAL_FAMILY:
            raise DatasetError(f"{where}: camera {camera_id} is {camera.model}, a spherical model; training needs "
                               "pinhole photos")
        if not is_pinhole_equivalent(camera.model, camera.params):
            raise DatasetError(f"{where}: camera {camera_id} is {camera.model} with lens distortion; undistort "
                               "first (COLMAP image_undistorter writes undistorted images/ and a PINHOLE model)")
        fx, fy, _, _ = pinhole_intrinsics(camera.model, camera.params)
        if not (fx > 0 and fy > 0 and camera.width > 0 and camera.height > 0):
            raise DatasetError(f"{where}: camera {camera_id} has a non-positive focal length or size")


def _check_photos(images: list, rec: Reconstruction) -> list[bool]:
    """Every photo exists, opens, and has its camera's size; returns which ones carry alpha."""
    problems, alpha = [], []
    for image in images:
        camera = rec.cameras[image.camera_id]
        file = rec.images_dir / image.name
        try:
            with PILImage.open(file) as photo:
                size, mode, info = photo.size, photo.mode, photo.info
        except FileNotFoundError:
            problems.append(f"{file}: missing")
            continue
        except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
            problems.append(f"{file}: cannot be read as an image ({exc})")
            continue
        if size != (camera.width, camera.height):
            problems.append(f"{file}: is {size[0]}x{size[1]} pixels but its camera {camera.camera_id} is "
                            f"{camera.width}x{camera.height} (use the photos the model was made from)")
        alpha.append(mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in info))
    if problems:
        raise DatasetError(f"{len(problems)} photo problem(s) would stop training: "
                           + "; ".join(problems[:_PROBLEMS_SHOWN]) + (" ..." if len(problems) > _PROBLEMS_SHOWN else ""))
    return alpha


def _keep_views_seeing_sphere(views: list[View], normalization: SphereNormalization) -> tuple[list[View], list[str]]:
    """Drop photos none of whose test rays enter the unit sphere; none left means the sphere is wrong."""
    t = (np.arange(_VISIBILITY_GRID) + 0.5) / _VISIBILITY_GRID
    seeing, blind = [], []
    for view in views:
        px = np.stack(np.meshgrid(t * view.width, t * view.height, indexing="xy"), -1).reshape(-1, 2)
        # Also the ray through the sphere centre's image, so a sphere smaller than the grid's spacing is seen.
        centre_cam = view.c2w[:3, :3].T @ (-view.c2w[:3, 3])
        if centre_cam[2] > 0:
            fx, fy, cx, cy = view.intrinsics
            u, v = fx * centre_cam[0] / centre_cam[2] + cx, fy * centre_cam[1] / centre_cam[2] + cy
            if 0 <= u <= view.width and 0 <= v <= view.height:
                px = np.concatenate([px, [[u, v]]])
        n = len(px)
        c2w = torch.as_tensor(view.c2w, dtype=torch.float64).expand(n, 4, 4)
        intr = torch.tensor(view.intrinsics, dtype=torch.float64).expand(n, 4)
        origins, dirs = camera_rays(c2w, intr, torch.as_tensor(px))
        _, _, hit = intersect_unit_sphere(origins, dirs)
        (seeing if bool(hit.any()) else blind).append(view)
    if not seeing:
        raise DatasetError(f"sphere_center {list(normalization.center)} / sphere_radius {normalization.radius:g}: "
                           f"no camera ray enters the bounding sphere; move or enlarge it to hold the object")
    return seeing, [v.name for v in blind]
