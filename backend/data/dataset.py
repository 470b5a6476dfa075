"""A posed photo set ready to train on: read and judged once through ``shared/dataset_source``, normalised to the
unit sphere.

Training refuses exactly the datasets the dataset check refuses, with the same message (the verdict is
``shared/dataset_source``'s); every photo is decoded once here so a truncated file stops training before the first
iteration, not hours in. What only training knows is checked here too: a bounding sphere no camera sees.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...shared.camera_convention import c2w_opencv_from_colmap
from ...shared.camera_models import pinhole_intrinsics
from ...shared.dataset_source import DatasetSourceError, judge_dataset, read_dataset
from ...shared.sphere import BoundingSphere, estimate_sphere
from .photo_probe import PhotoProbe
from .rays import camera_rays, intersect_unit_sphere

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
    normalization: BoundingSphere
    use_alpha: bool                   # every photo has an alpha channel: it is used as a mask
    source: Path
    scene_type: str
    warnings: list[str] = field(default_factory=list)


def dataset_sphere(path: Path, scene_type: str) -> BoundingSphere:
    """The sphere to train in when none was given: the file's own (transforms.json), else the fitted one."""
    try:
        source = read_dataset(path)
    except DatasetSourceError as exc:
        raise DatasetError(str(exc)) from None
    return source.sphere if source.sphere is not None else estimate_sphere(source.rec, scene_type)


def load_dataset(path: Path, *, sphere: BoundingSphere | None = None, scene_type: str = "object",
                 downscale: float = 1.0, allowed_roots: Sequence[Path] | None = None) -> PosedDataset:
    """Read, judge and normalise a dataset; raises DatasetError with the verdict's refusal when it has errors.

    ``allowed_roots`` confines the photos as ``shared.dataset_source.photo_problems`` describes."""
    path = Path(path).expanduser()
    if not math.isfinite(downscale) or downscale < 1:
        raise DatasetError(f"downscale must be a number of at least 1, not {downscale!r}")
    probe = PhotoProbe()
    source, verdict = judge_dataset(path, allowed_roots=allowed_roots, read_photo=probe)
    if verdict.refusal is not None:
        raise DatasetError(verdict.refusal)
    rec = source.rec
    warnings = [str(problem) for problem in verdict.warnings]
    if sphere is None:
        sphere = source.sphere if source.sphere is not None else estimate_sphere(rec, scene_type)
    normalization = sphere      # the unit sphere the SDF trains in is this sphere, scaled
    views = []
    for image in source.photos():
        camera = rec.cameras[image.camera_id]
        fx, fy, cx, cy = pinhole_intrinsics(camera.model, camera.params)
        width = max(1, round(camera.width / downscale))
        height = max(1, round(camera.height / downscale))
        sx, sy = width / camera.width, height / camera.height   # exact: image corners map to corners
        c2w = normalization.c2w_to_unit(c2w_opencv_from_colmap(image.qvec, image.tvec))
        photo = source.photo_path(image)
        views.append(View(image.name, photo, width, height, (fx * sx, fy * sy, cx * sx, cy * sy), c2w,
                          probe.has_alpha[photo]))
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


def _keep_views_seeing_sphere(views: list[View], normalization: BoundingSphere) -> tuple[list[View], list[str]]:
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
