"""The bounding sphere: the region the SDF is trained in, in the input's world coordinates.

A wrong sphere is the commonest cause of holes, blobs and meshes that miss the object, so the rules that others use
are reproduced here next to ours and compared on real data in ``docs/bounding-sphere.md``:

- ``sphere_from_poses_neuralangelo``: Neuralangelo's ``bound_by_pose`` (object scenes);
- ``sphere_from_points_neuralangelo``: Neuralangelo's ``bound_by_points`` (indoor and, in practice, outdoor:
  its own check that would pick the pose rule outdoors is switched off);
- ``sphere_max_distance``: BlenderNeuralangelo's rule (bounding-box centre, farthest point);
- ``estimate_sphere``: ours, used on import: where the cameras look, sized by the points they agree on.

Warnings for the panel are plain functions returning sentences, so the UI and tests share them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .camera_convention import camera_centers, viewing_directions
from .camera_models import SPHERICAL_FAMILY, model_by_name, pinhole_intrinsics
from .jobs import SCENE_TYPES
from .reconstruction import Reconstruction

_POINT_COVERAGE = 0.98       # fraction of (trusted) points a fitted sphere holds: the rest are strays
_OBJECT_MARGIN = 1.1         # room around the object so its surface is not at the sphere's edge
_CAMERA_CLEARANCE = 0.9      # an object sphere stays within this fraction of the nearest camera's distance
_INDOOR_CAMERA_MARGIN = 1.1  # an indoor sphere reaches this far beyond its farthest camera
_CENTER_TRIM = 0.05          # per-axis quantile that bounds the box a robust centre sits in
_MIN_POINTS = 20             # below this, points say too little and the cameras decide
_EXACT_FIT_POINTS = 20_000   # above this, the smallest sphere is found for a sample, then grown to hold all
_ESTIMATE_POINTS = 100_000   # points an estimate looks at, at most (an even sample of the rest)


@dataclass(frozen=True, eq=False)
class BoundingSphere:
    """A sphere in the input's world coordinates (COLMAP's, or the transforms.json's), and the map between that
    world and the unit sphere the SDF trains in: ``x_unit = (x_world - center) / radius``.

    One type from the panel to the checkpoint: the inverse map travels with every checkpoint and mesh, so meshes
    land in place (Neuralangelo re-centred cameras in one place and forgot it in another, and its meshes came out
    offset).
    """

    center: np.ndarray
    radius: float

    def __post_init__(self) -> None:
        center = np.array(self.center, np.float64).reshape(3)
        if not np.all(np.isfinite(center)) or not np.isfinite(self.radius) or self.radius <= 0:
            raise ValueError(f"sphere_center / sphere_radius: a bounding sphere needs three finite numbers and a "
                             f"radius above 0, got {center} and {self.radius}")
        center.setflags(write=False)
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "radius", float(self.radius))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BoundingSphere) and self.radius == other.radius
                and bool(np.array_equal(self.center, other.center)))

    def __hash__(self) -> int:
        return hash((tuple(self.center), self.radius))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which of the (N, 3) points lie inside (or on) the sphere."""
        return np.linalg.norm(np.asarray(points, np.float64) - self.center, axis=-1) <= self.radius

    def aabb(self) -> np.ndarray:
        """(3, 2) [[xmin, xmax], ...]: the box around the sphere, as transforms.json's aabb_range."""
        return np.stack([self.center - self.radius, self.center + self.radius], axis=1)

    def to_unit(self, points_world: np.ndarray) -> np.ndarray:
        return (np.asarray(points_world, np.float64) - self.center) / self.radius

    def to_world(self, points_unit: np.ndarray) -> np.ndarray:
        return np.asarray(points_unit, np.float64) * self.radius + self.center

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
        return self.radius, tuple(float(v) for v in self.center)

    def to_json(self) -> dict[str, Any]:
        return {"center": [float(v) for v in self.center], "radius": self.radius}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BoundingSphere":
        return cls(np.asarray(data["center"], np.float64), float(data["radius"]))


# ------------------------------------------------------------------------------------------- others' rules


def camera_axes(rec: Reconstruction) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) camera centres and (N, 3) optical axes in world coordinates, images sorted by id."""
    ids = sorted(rec.images)
    qvec = np.array([rec.images[i].qvec for i in ids])
    tvec = np.array([rec.images[i].tvec for i in ids])
    return camera_centers(qvec, tvec), viewing_directions(qvec)


def sphere_from_poses_neuralangelo(centers: np.ndarray, directions: np.ndarray) -> BoundingSphere:
    """Neuralangelo's ``bound_by_pose``: the mean, over all ordered camera pairs (self-pairs included), of the
    midpoint of closest approach of their optical axes; radius = mean distance of the cameras from the ORIGIN.

    The radius ignores the centre it just found, so it is only sensible when the world origin is near the object.
    """
    p = np.asarray(centers, np.float64)
    d = np.asarray(directions, np.float64)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    total = np.zeros(3)
    for i in range(len(p)):  # one camera against all: N^2 pairs without an N^2 x 3 array
        b = p - p[i]
        c = d @ d[i]
        rhs1, rhs2 = b @ d[i], -(b * d).sum(1)
        det = 1.0 - c * c
        parallel = det < 1e-12
        safe = np.where(parallel, 1.0, det)
        t1 = np.where(parallel, 0.0, (rhs1 + c * rhs2) / safe)
        t2 = np.where(parallel, 0.0, (c * rhs1 + rhs2) / safe)
        # Least squares' minimum-norm answer for parallel axes is the midpoint of the two camera centres.
        midpoint = 0.5 * ((p[i] + t1[:, None] * d[i]) + (p + t2[:, None] * d))
        total += midpoint.sum(0)
    center = total / len(p) ** 2
    return BoundingSphere(center, float(np.linalg.norm(p, axis=1).mean()))


def sphere_from_points_neuralangelo(xyz: np.ndarray) -> BoundingSphere:
    """Neuralangelo's ``bound_by_points``: the points' mean, radius 3 x the largest per-axis standard deviation."""
    xyz = np.asarray(xyz, np.float64)
    return BoundingSphere(xyz.mean(0), float(3.0 * xyz.std(0).max()))


def sphere_max_distance(xyz: np.ndarray) -> BoundingSphere:
    """BlenderNeuralangelo's rule: the points' bounding-box centre, radius to the farthest point."""
    xyz = np.asarray(xyz, np.float64)
    center = 0.5 * (xyz.min(0) + xyz.max(0))
    return BoundingSphere(center, float(np.linalg.norm(xyz - center, axis=1).max()))


# ---------------------------------------------------------------------------------------------------- ours


def fit_sphere_to_points(xyz: np.ndarray, coverage: float = _POINT_COVERAGE) -> BoundingSphere:
    """A sphere holding ``coverage`` of the points, blind to the rest (strays, far background).

    With coverage 1 it is the exact smallest sphere around every point: right for points an artist selected.
    Otherwise only quantiles decide, so a few far points cannot pull it: the centre is the middle of the box
    between the per-axis 5% and 95% quantiles (strays up to 5% on a side leave it in place), the radius the
    ``coverage`` quantile of the distances to it.
    """
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    if len(xyz) == 0:
        raise ValueError("cannot fit a sphere to no points")
    if coverage < 1.0:
        low, high = np.quantile(xyz, [_CENTER_TRIM, 1.0 - _CENTER_TRIM], axis=0)
        center = 0.5 * (low + high)
        radius = float(np.quantile(np.linalg.norm(xyz - center, axis=1), coverage))
        return BoundingSphere(center, max(radius, 1e-9))
    if len(xyz) <= _EXACT_FIT_POINTS:
        return minimal_enclosing_sphere(xyz)
    # Many points: the exact sphere of an even sample gives the centre, every point the radius.
    sample = xyz[:: int(np.ceil(len(xyz) / _EXACT_FIT_POINTS))]
    center = minimal_enclosing_sphere(sample).center
    return BoundingSphere(center, float(np.linalg.norm(xyz - center, axis=1).max()))


def minimal_enclosing_sphere(xyz: np.ndarray) -> BoundingSphere:
    """The exact smallest sphere around all points.

    Welzl's algorithm on a small core set (the extreme points along many directions), grown with the farthest
    points left outside until none is: the core set's sphere then holds every point, so it is the answer.
    """
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    projections = xyz @ _DIRECTIONS.T
    core = set(np.argmin(projections, 0).tolist()) | set(np.argmax(projections, 0).tolist())
    rng = np.random.default_rng(0)
    while True:
        subset = [tuple(p) for p in xyz[rng.permutation(sorted(core))].tolist()]
        center, radius = _welzl(subset, len(subset), ())
        center = np.array(center)
        dist = np.linalg.norm(xyz - center, axis=1)
        outside = np.nonzero(dist > radius * (1 + 1e-12) + 1e-12)[0]
        if not len(outside):
            return BoundingSphere(center, max(radius, 1e-9))
        core |= set(outside[np.argsort(dist[outside])[-32:]].tolist())


def _fibonacci_directions(count: int) -> np.ndarray:
    golden = np.pi * (3.0 - np.sqrt(5.0))
    k = np.arange(count)
    z = 1 - 2 * (k + 0.5) / count
    return np.column_stack([np.sqrt(1 - z * z) * np.cos(golden * k), np.sqrt(1 - z * z) * np.sin(golden * k), z])


_DIRECTIONS = _fibonacci_directions(64)

Point = tuple[float, float, float]


def _welzl(points: list[Point], count: int, boundary: tuple) -> tuple[Point, float]:
    """Smallest sphere around points[:count] with ``boundary`` on its surface (Welzl's algorithm written as
    nested loops, so the recursion is at most four deep; plain floats, because numpy is slow on 3-vectors)."""
    center, radius = _sphere_through(boundary)
    if len(boundary) == 4:
        return center, radius
    for i in range(count):
        p = points[i]
        if radius < 0 or _distance(p, center) > radius * (1 + 1e-12) + 1e-12:
            center, radius = _welzl(points, i, boundary + (p,))
    return center, radius


def _distance(a: Point, b: Point) -> float:
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2) ** 0.5


def _sphere_through(boundary) -> tuple[Point, float]:
    """The smallest sphere with every boundary point (at most four) on its surface; radius -1 for none."""
    if not boundary:
        return (0.0, 0.0, 0.0), -1.0
    p0 = np.asarray(boundary[0], np.float64)
    if len(boundary) == 1:
        return tuple(p0), 0.0
    edges = np.asarray(boundary[1:], np.float64) - p0
    # The centre is p0 + edges^T a with |c - p_i| all equal: (edges edges^T) a = |edges|^2 / 2.
    gram = edges @ edges.T
    rhs = 0.5 * (edges * edges).sum(1)
    try:
        a = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:  # collinear or coplanar boundary: the least-squares centre
        a = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    center = p0 + edges.T @ a
    radius = max(_distance(tuple(center), tuple(p)) for p in np.asarray(boundary, np.float64))
    return tuple(center.tolist()), float(radius)


def closest_point_to_axes(centers: np.ndarray, directions: np.ndarray) -> np.ndarray | None:
    """The point nearest (least squares) to every camera's optical axis: where the cameras look together.

    None when the axes do not converge (all parallel, or the point lies behind most cameras).
    """
    d = np.asarray(directions, np.float64)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    projectors = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    a = projectors.sum(0)
    b = np.einsum("nij,nj->i", projectors, np.asarray(centers, np.float64))
    eigenvalues = np.linalg.eigvalsh(a)
    if eigenvalues[0] < 1e-3 * eigenvalues[-1]:
        return None
    point = np.linalg.solve(a, b)
    in_front = ((point - centers) * d).sum(1) > 0
    return point if in_front.mean() > 0.5 else None


def half_fov_rad(rec: Reconstruction) -> np.ndarray:
    """Per image (sorted by id), half the narrower field of view: the cone a sphere must fit in to be seen whole."""
    out = []
    for image_id in sorted(rec.images):
        camera = rec.cameras[rec.images[image_id].camera_id]
        if model_by_name(camera.model).family == SPHERICAL_FAMILY:
            out.append(np.pi / 2)
            continue
        fx, fy, _, _ = pinhole_intrinsics(camera.model, camera.params)
        out.append(min(np.arctan(camera.width / (2 * fx)), np.arctan(camera.height / (2 * fy))))
    return np.array(out)


def fit_sphere_to_views(centers: np.ndarray, directions: np.ndarray, half_fov: np.ndarray,
                        points_xyz: np.ndarray | None = None) -> BoundingSphere:
    """The sphere the cameras frame: centred where their axes meet, as large as the median view holds whole.

    A sphere of radius r at distance d fills a camera's narrower half-angle theta when r = d sin(theta).
    When the axes do not meet (a forward-facing or sideways sweep), the centre is the points' robust centre,
    or, with no points, one median camera spacing in front of the cameras.
    """
    centers = np.asarray(centers, np.float64).reshape(-1, 3)
    directions = np.asarray(directions, np.float64).reshape(-1, 3)
    center = closest_point_to_axes(centers, directions)
    if center is None:
        if points_xyz is not None and len(points_xyz) >= _MIN_POINTS:
            center = fit_sphere_to_points(points_xyz).center
        else:
            spacing = np.median(np.linalg.norm(centers - centers.mean(0), axis=1)) or 1.0
            mean_direction = directions.mean(0)
            center = centers.mean(0) + spacing * mean_direction / (np.linalg.norm(mean_direction) or 1.0)
    distances = np.linalg.norm(centers - center, axis=1)
    radius = float(np.median(distances * np.sin(np.asarray(half_fov, np.float64))))
    return BoundingSphere(center, max(radius, 1e-9))


def fit_sphere_to_camera_views(rec: Reconstruction) -> BoundingSphere:
    """``fit_sphere_to_views`` for a whole reconstruction."""
    centers, directions = camera_axes(rec)
    return fit_sphere_to_views(centers, directions, half_fov_rad(rec), rec.points.xyz)


def _trusted_points(rec: Reconstruction) -> np.ndarray:
    """The points an estimate should believe: seen by at least three photos (two-view points are the noisiest),
    not alone in their neighbourhood (SfM strays are isolated), evenly thinned to a sample that keeps the
    statistics and the import fast."""
    lengths = np.diff(rec.points.track_offsets)
    trusted = rec.points.xyz[lengths >= 3]
    trusted = trusted if len(trusted) >= _MIN_POINTS else rec.points.xyz
    if len(trusted) > _ESTIMATE_POINTS:
        trusted = trusted[:: int(np.ceil(len(trusted) / _ESTIMATE_POINTS))]
    crowded = trusted[_has_neighbours(trusted)]
    return crowded if len(crowded) >= _MIN_POINTS else trusted


def _has_neighbours(xyz: np.ndarray) -> np.ndarray:
    """Which points share their grid cell with another point; cells are sized so that a surface sampled by
    the points puts a few in each (SfM points lie on surfaces: spacing ~ size / sqrt(N))."""
    if len(xyz) < 2:
        return np.ones(len(xyz), bool)
    size = 2.0 * fit_sphere_to_points(xyz).radius
    cell = 2.0 * size / np.sqrt(len(xyz))
    keys = np.floor((xyz - xyz.min(0)) / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] >= 2


def estimate_sphere(rec: Reconstruction, scene_type: str) -> BoundingSphere:
    """Carrara's sphere for a fresh import; robust to stray points and to where the world origin happens to be.

    - object: the cameras' view sphere finds the object; the trusted points inside 1.5x of it size the sphere,
      with a margin, kept clear of the cameras.
    - indoor: the trusted points' sphere, stretched to hold every camera (the cameras are inside the room).
    - outdoor: like object when the cameras look at a common point, otherwise the trusted points' sphere.
    """
    _check_scene_type(scene_type)
    centers, directions = camera_axes(rec)
    points = _trusted_points(rec) if len(rec.points) else np.zeros((0, 3))
    converging = closest_point_to_axes(centers, directions) is not None
    view = fit_sphere_to_views(centers, directions, half_fov_rad(rec), points)
    if scene_type == "object" or (scene_type == "outdoor" and converging):
        near = points[np.linalg.norm(points - view.center, axis=1) <= 1.5 * view.radius]
        if len(near) < _MIN_POINTS:
            return view
        fitted = fit_sphere_to_points(near)
        radius = _OBJECT_MARGIN * fitted.radius
        clearance = _CAMERA_CLEARANCE * np.linalg.norm(centers - fitted.center, axis=1).min()
        if clearance >= 0.5 * fitted.radius:  # a camera among the points means no clearance can be kept
            radius = min(radius, clearance)
        return BoundingSphere(fitted.center, radius)
    fitted = fit_sphere_to_points(points) if len(points) >= _MIN_POINTS else view
    if scene_type == "indoor":
        farthest = np.linalg.norm(centers - fitted.center, axis=1).max()
        return BoundingSphere(fitted.center, max(fitted.radius, _INDOOR_CAMERA_MARGIN * farthest))
    return fitted


def _check_scene_type(scene_type: str) -> None:
    if scene_type not in SCENE_TYPES:
        raise ValueError(f"scene type must be one of {list(SCENE_TYPES)}, not {scene_type!r}")


# ------------------------------------------------------------------------------------------------ warnings


def scene_extent(points: np.ndarray, camera_centers_xyz: np.ndarray) -> float:
    """A robust size of the whole capture: the radius holding 98% of the points and every camera."""
    everything = np.concatenate([np.asarray(points, np.float64).reshape(-1, 3),
                                 np.asarray(camera_centers_xyz, np.float64).reshape(-1, 3)])
    return fit_sphere_to_points(everything).radius


def sphere_warnings(sphere: BoundingSphere, points: np.ndarray, camera_centers_xyz: np.ndarray,
                    scene_type: str) -> list[str]:
    """Sentences for the panel when the sphere is likely wrong for this capture (empty when it looks right)."""
    _check_scene_type(scene_type)
    points = np.asarray(points, np.float64).reshape(-1, 3)
    cams = np.asarray(camera_centers_xyz, np.float64).reshape(-1, 3)
    messages = []
    if len(points):
        inside = float(sphere.contains(points).mean())
        if inside < 0.5:
            messages.append(f"The sphere holds only {inside:.0%} of the {len(points):,} points: most of the scene "
                            f"would be cut off. Enlarge it or fit it to the points.")
    cameras_inside = int(sphere.contains(cams).sum()) if len(cams) else 0
    if scene_type == "object" and cameras_inside:
        messages.append(f"{cameras_inside} of {len(cams)} cameras are inside the sphere; for an object scene the "
                        f"cameras must stay outside. Shrink it, or choose 'indoor'.")
    if scene_type == "indoor" and len(cams) and cameras_inside < len(cams):
        messages.append(f"{len(cams) - cameras_inside} of {len(cams)} cameras are outside the sphere; an indoor "
                        f"scene is seen from inside. Enlarge it, or choose 'object' or 'outdoor'.")
    if len(points) + len(cams):
        extent = scene_extent(points, cams)
        if sphere.radius < 0.02 * extent:
            messages.append(f"The sphere (radius {sphere.radius:.3g}) is tiny against the scene (about "
                            f"{extent:.3g} across): the mesh would be a speck. Fit it to the points or the "
                            f"cameras' view.")
        elif sphere.radius > 20.0 * extent:
            messages.append(f"The sphere (radius {sphere.radius:.3g}) is huge against the scene (about "
                            f"{extent:.3g}): detail would be lost to empty space.")
    return messages
