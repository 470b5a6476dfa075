"""How smooth a reconstructed mesh is where the real surface is flat but painted (issue 17 item 4): a regulariser
that keeps colour (paint, stone texture, shadows) out of the geometry leaves such a region flat.

The region: the dominant plane of a point set (RANSAC, then a least-squares refit on its inliers), and on it the
patch of grid cells holding at least ``min_points`` inliers, eroded by one cell so the patch's edges and the border
of anything standing out of the plane (the fountain's relief) are left out. The points are the dataset's COLMAP
sparse points inside the training sphere when it has any: they do not depend on the mesh, so every run of one
dataset is measured on the same patch. Without them the mesh's own vertices are used (said in the output); that
patch then leaves out whatever the mesh bends beyond the RANSAC threshold, which flatters a bumpy mesh.

The figures: over the mesh faces whose centroid lies within ``band`` of the plane and projects into the patch, the
area-weighted angle between face normals and the plane normal (mean, RMS, 95th percentile), the vertices' RMS
distance to the plane, and a high-pass angle a slight tilt of the whole patch does not change (see
``plane_patch_smoothness``). Their coverage (the patch's share the measured faces cover) says how much of the wall
they describe, and per cell of the patch the distance of the nearest mesh vertex to the plane says where the rest
of the wall went (``surface_offsets``): a mesh can render its photos well and still put a wall in front of itself.

Sizes default to fractions of an extent (``SmoothnessSettings``), so one setting serves a bunny in unit
coordinates and a wall in metres; each can be given in world units instead, and the output states the values used.

    python3 benchmarks/surface_smoothness.py --mesh MESH.ply --dataset ../shared/data/strecha_fountain_p11/colmap_gt_poses
    python3 benchmarks/surface_smoothness.py --mesh MESH.ply --points-from mesh
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _bootstrap import ensure_carrara_importable
    ensure_carrara_importable()

from carrara.shared.dataset_source import read_dataset  # noqa: E402
from carrara.shared.sphere import BoundingSphere, estimate_sphere  # noqa: E402

ROBUST_PERCENTILES = (2.0, 98.0)     # an extent is measured between these, so a few strays do not set it
_SCORE_POINTS = 20_000               # RANSAC hypotheses are scored on at most this many points
_HYPOTHESES_PER_CHUNK = 64
_REFITS = 3
_CELLS_PER_RADIUS = 4                # grid pitch of the high-pass neighbourhood: radius / 4
LOW_COVERAGE = 0.5                   # below it the summary warns that the angles describe a part of the patch


@dataclass(frozen=True)
class SmoothnessSettings:
    """The region's and the figure's sizes. A world-unit value, when given, replaces its fraction.

    - threshold: RANSAC inlier distance, of the points' 3-D extent (largest 2-98 % span of an axis).
    - cell_size: the patch grid's cell side, of the inliers' in-plane extent (larger 2-98 % span of the plane axes).
    - band: how far from the plane a face centroid may lie, of the in-plane extent.
    - radius: the high-pass neighbourhood, of the in-plane extent; bumps shorter than about 2 x radius count.
    On the fountain (points inside the 4.9 m training sphere, in-plane extent about 8 m) the defaults are about
    4 cm, 25 cm, 8 cm and 12 cm: the wall's stones and joints are cm deep, its relief tens of cm, and a
    512-cell marching-cubes grid across the sphere has 2 cm voxels.
    """

    threshold_fraction: float = 0.005
    cell_fraction: float = 1 / 32
    band_fraction: float = 0.01
    radius_fraction: float = 1 / 64
    min_points: int = 3
    iterations: int = 500
    seed: int = 0
    threshold: float | None = None
    cell_size: float | None = None
    band: float | None = None
    radius: float | None = None


@dataclass(frozen=True)
class PlaneFit:
    """The plane ``normal . x = offset`` (unit normal, its largest component positive) and its inliers."""

    normal: np.ndarray      # (3,)
    offset: float
    inliers: np.ndarray     # (N,) bool over the points fitted

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) @ self.normal - self.offset

    def axes(self) -> np.ndarray:
        """(2, 3) orthonormal in-plane axes, fixed by the normal alone, so a patch's cells are reproducible."""
        helper = np.eye(3)[int(np.argmin(np.abs(self.normal)))]
        u = np.cross(self.normal, helper)
        u /= np.linalg.norm(u)
        return np.stack([u, np.cross(self.normal, u)])


@dataclass(frozen=True)
class PlanePatch:
    """Grid cells in plane coordinates (``points @ axes.T``); cell (i, j) spans corner + (i, j) * cell_size."""

    axes: np.ndarray        # (2, 3)
    corner: np.ndarray      # (2,)
    cell_size: float
    cells: np.ndarray       # (I, J) bool

    @property
    def area(self) -> float:
        return float(self.cells.sum()) * self.cell_size ** 2

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which points project into a cell of the patch."""
        ij = np.floor((np.asarray(points, np.float64) @ self.axes.T - self.corner) / self.cell_size).astype(np.int64)
        inside = np.all((ij >= 0) & (ij < self.cells.shape), axis=1)
        found = np.zeros(len(ij), bool)
        found[inside] = self.cells[ij[inside, 0], ij[inside, 1]]
        return found


def robust_extent(points: np.ndarray) -> float:
    """The largest 2-98 % span of the points' coordinates: a size a few strays do not set."""
    low, high = np.percentile(points, ROBUST_PERCENTILES, axis=0)
    return float(np.max(high - low))


def dominant_plane(points: np.ndarray, threshold: float, iterations: int = 500, seed: int = 0) -> PlaneFit:
    """The plane most points lie within ``threshold`` of: RANSAC over point triples (scored on a fixed random
    subset when there are many points), then least-squares refits on the inliers. The same seed gives the same
    plane."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise ValueError(f"a plane needs at least 3 points of shape (N, 3), got {points.shape}")
    if not threshold > 0:
        raise ValueError(f"the RANSAC threshold must be positive, got {threshold}")
    rng = np.random.default_rng(seed)
    scored = points if len(points) <= _SCORE_POINTS else points[rng.choice(len(points), _SCORE_POINTS, False)]
    triples = points[rng.integers(0, len(points), (iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 1e-12 * max(1.0, robust_extent(points)) ** 2
    if not usable.any():
        raise ValueError("every sampled point triple is degenerate (the points are collinear or repeated)")
    normals, triples = normals[usable] / lengths[usable, None], triples[usable]
    offsets = np.einsum("ij,ij->i", normals, triples[:, 0])
    counts = np.concatenate([
        (np.abs(scored @ normals[k:k + _HYPOTHESES_PER_CHUNK].T - offsets[k:k + _HYPOTHESES_PER_CHUNK])
         < threshold).sum(axis=0) for k in range(0, len(normals), _HYPOTHESES_PER_CHUNK)])
    best = int(np.argmax(counts))
    normal, offset = normals[best], float(offsets[best])
    inliers = np.abs(points @ normal - offset) < threshold
    for _ in range(_REFITS):
        centroid = points[inliers].mean(axis=0)
        normal = np.linalg.svd(points[inliers] - centroid, full_matrices=False)[2][2]
        offset = float(normal @ centroid)
        refitted = np.abs(points @ normal - offset) < threshold
        if np.array_equal(refitted, inliers) or refitted.sum() < 3:
            break
        inliers = refitted
    sign = 1.0 if normal[int(np.argmax(np.abs(normal)))] > 0 else -1.0
    return PlaneFit(sign * normal, sign * offset, np.abs(points @ normal - offset) < threshold)


def in_plane_extent(points: np.ndarray, plane: PlaneFit) -> float:
    """The inliers' larger 2-98 % span along the plane's axes."""
    return robust_extent(np.asarray(points, np.float64)[plane.inliers] @ plane.axes().T)


def plane_patch(points: np.ndarray, plane: PlaneFit, cell_size: float, min_points: int = 3) -> PlanePatch:
    """The cells of the plane holding at least ``min_points`` inliers, less every cell with an empty neighbour
    among its eight (one cell of erosion: the patch's edges and the border of what stands out of the plane)."""
    if not cell_size > 0:
        raise ValueError(f"the patch's cell size must be positive, got {cell_size}")
    axes = plane.axes()
    uv = np.asarray(points, np.float64)[plane.inliers] @ axes.T
    corner = uv.min(axis=0) - cell_size          # one empty cell around: edge cells are eroded like any other
    ij = np.floor((uv - corner) / cell_size).astype(np.int64)
    shape = tuple(int(n) for n in ij.max(axis=0) + 2)
    counts = np.bincount(np.ravel_multi_index(ij.T, shape), minlength=shape[0] * shape[1]).reshape(shape)
    occupied = np.pad(counts >= min_points, 1)
    kept = np.ones(shape, bool)
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            kept &= occupied[di:di + shape[0], dj:dj + shape[1]]
    return PlanePatch(axes, corner, float(cell_size), kept)


def _weighted_percentile(values: np.ndarray, weights: np.ndarray, percentile: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, percentile / 100.0 * cumulative[-1])])


def _local_mean_normals(uv: np.ndarray, normals: np.ndarray, areas: np.ndarray, radius: float) -> np.ndarray:
    """Each face's area-weighted mean normal of the faces around it: faces are binned on a grid of pitch
    radius / 4 in plane coordinates, and the cells whose centres lie within ``radius`` of a face's cell are summed
    (a disk, exact to the grid's pitch)."""
    pitch = radius / _CELLS_PER_RADIUS
    ij = np.floor((uv - uv.min(axis=0)) / pitch).astype(np.int64)
    shape = tuple(int(n) for n in ij.max(axis=0) + 1)
    flat = np.ravel_multi_index(ij.T, shape)
    sums = np.stack([np.bincount(flat, areas * normals[:, k], shape[0] * shape[1]).reshape(shape) for k in range(3)],
                    axis=-1)
    reach = _CELLS_PER_RADIUS
    padded = np.pad(sums, ((reach, reach), (reach, reach), (0, 0)))
    neighbourhood = np.zeros_like(sums)
    for di in range(-reach, reach + 1):
        for dj in range(-reach, reach + 1):
            if di * di + dj * dj <= reach * reach:
                neighbourhood += padded[reach + di:reach + di + shape[0], reach + dj:reach + dj + shape[1]]
    mean = neighbourhood[ij[:, 0], ij[:, 1]]
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def surface_offsets(vertices: np.ndarray, plane: PlaneFit, patch: PlanePatch) -> dict[str, Any]:
    """Where the mesh is, cell by cell of the patch: the distance from the plane to the mesh vertex nearest it
    among those projecting into the cell, however far. The angles only see faces within the band; this says
    whether the rest of the patch has no surface (the cell is empty) or a surface elsewhere (a wall rebuilt
    in front of or behind itself, or hidden by floaters), and how far off (``offset_*``, median and 90th
    percentile over the cells with a vertex; ``empty_cells``, the fraction with none). A vertex stands for
    its surface to within half a marching-cubes cell."""
    vertices = np.asarray(vertices, np.float64)
    ij = np.floor((vertices @ patch.axes.T - patch.corner) / patch.cell_size).astype(np.int64)
    inside = np.all((ij >= 0) & (ij < patch.cells.shape), axis=1)
    inside[inside] = patch.cells[ij[inside, 0], ij[inside, 1]]
    nearest = np.full(patch.cells.shape, np.inf)
    np.minimum.at(nearest, (ij[inside, 0], ij[inside, 1]), np.abs(plane.signed_distance(vertices[inside])))
    per_cell = nearest[patch.cells]
    found = per_cell[np.isfinite(per_cell)]
    return {"empty_cells": float(1.0 - len(found) / len(per_cell)) if len(per_cell) else 1.0,
            "offset_median": float(np.median(found)) if len(found) else None,
            "offset_p90": float(np.percentile(found, 90)) if len(found) else None}


def plane_patch_smoothness(vertices: np.ndarray, faces: np.ndarray, plane: PlaneFit, patch: PlanePatch,
                           band: float, radius: float) -> dict[str, Any]:
    """Normal variation of the faces whose centroid lies within ``band`` (world units) of the plane and projects
    into the patch; angles in degrees, area-weighted, sign-agnostic (a face seen from behind counts as its mirror).

    ``highpass_mean_deg`` is the mean angle between each face's normal and the area-weighted mean normal of the
    measured faces within ``radius`` of it (in plane coordinates). It is zero for any plane, tilted or not, and
    counts bumps shorter than about 2 x radius fully: what colour leaking into geometry makes. It is chosen over
    the mean dihedral angle of adjacent faces because that one depends on the triangle size (it grows with the
    marching-cubes resolution for one and the same surface noise and halves when a flat mesh is subdivided), so
    meshes of different resolutions or decimations could not be compared; a radius in world units can.
    """
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    corners = vertices[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    centroids = corners.mean(axis=1)
    chosen = ((double_area > 0) & (np.abs(plane.signed_distance(centroids)) <= band) & patch.contains(centroids))
    figures: dict[str, Any] = {"faces": int(chosen.sum()), "patch_area": patch.area, "band": band, "radius": radius,
                               **surface_offsets(vertices, plane, patch)}
    if not chosen.any():
        return {**figures, "covered_area": 0.0, "coverage": 0.0, "angle_mean_deg": None, "angle_rms_deg": None,
                "angle_p95_deg": None, "distance_rms": None, "highpass_mean_deg": None}
    normals = cross[chosen] / double_area[chosen, None]
    areas = 0.5 * double_area[chosen]
    along = normals @ plane.normal
    normals *= np.where(along < 0, -1.0, 1.0)[:, None]           # every normal on the plane normal's side
    angles = np.degrees(np.arccos(np.clip(np.abs(along), 0.0, 1.0)))
    weight = areas / areas.sum()
    local = _local_mean_normals(centroids[chosen] @ patch.axes.T, normals, areas, radius)
    highpass = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", normals, local), -1.0, 1.0)))
    used_vertices = np.unique(faces[chosen])
    covered = float((areas * np.abs(along)).sum())               # the faces' area projected onto the plane
    return {**figures, "covered_area": covered, "coverage": covered / patch.area if patch.area else 0.0,
            "angle_mean_deg": float(weight @ angles), "angle_rms_deg": float(np.sqrt(weight @ angles ** 2)),
            "angle_p95_deg": _weighted_percentile(angles, weight, 95.0),
            "distance_rms": float(np.sqrt(np.mean(plane.signed_distance(vertices[used_vertices]) ** 2))),
            "highpass_mean_deg": float(weight @ highpass)}


def dataset_points(dataset: Path, sphere: BoundingSphere | None = None,
                   scene_type: str = "object") -> tuple[np.ndarray, BoundingSphere]:
    """The dataset's sparse points (read through ``shared/dataset_source``, the one reader) inside the training
    sphere (``sphere``, else the one training would fit), and that sphere. None of them: an empty (0, 3) array."""
    source = read_dataset(dataset)
    if sphere is None:
        sphere = source.sphere if source.sphere is not None else estimate_sphere(source.rec, scene_type)
    xyz = source.rec.points.xyz
    return xyz[np.linalg.norm(xyz - sphere.center, axis=1) <= sphere.radius], sphere


def flat_region(points: np.ndarray, settings: SmoothnessSettings = SmoothnessSettings()
                ) -> tuple[PlaneFit, PlanePatch, SmoothnessSettings]:
    """The plane and its patch for ``points``, and the settings with every size resolved to world units."""
    points = np.asarray(points, np.float64)
    threshold = settings.threshold or settings.threshold_fraction * robust_extent(points)
    plane = dominant_plane(points, threshold, settings.iterations, settings.seed)
    extent = in_plane_extent(points, plane)
    resolved = replace(settings, threshold=threshold,
                       cell_size=settings.cell_size or settings.cell_fraction * extent,
                       band=settings.band or settings.band_fraction * extent,
                       radius=settings.radius or settings.radius_fraction * extent)
    return plane, plane_patch(points, plane, resolved.cell_size, settings.min_points), resolved


def mesh_smoothness(vertices: np.ndarray, faces: np.ndarray, colmap_points: np.ndarray | None,
                    settings: SmoothnessSettings = SmoothnessSettings()) -> dict[str, Any]:
    """The whole figure of one mesh, JSON-ready: region from ``colmap_points`` when there are any (None or empty:
    from the mesh's vertices), the plane and patch, the sizes used, and ``plane_patch_smoothness``'s figures."""
    use_colmap = colmap_points is not None and len(colmap_points) >= 3
    points = colmap_points if use_colmap else vertices
    plane, patch, used = flat_region(points, settings)
    figures = plane_patch_smoothness(vertices, faces, plane, patch, used.band, used.radius)
    return {"points_from": "colmap" if use_colmap else "mesh", "points": int(len(points)),
            "plane_inliers": int(plane.inliers.sum()), "plane_normal": plane.normal.tolist(),
            "plane_offset": plane.offset, "patch_cells": int(patch.cells.sum()), "settings": asdict(used), **figures}


def summary(figures: dict[str, Any]) -> str:
    """One line of the figures, for the console."""
    if not figures["patch_cells"]:
        return (f"no flat patch: no cell of {figures['settings']['cell_size']:.3g} on the plane of "
                f"{figures['plane_inliers']} inliers kept {figures['settings']['min_points']} of them with full "
                f"neighbours (points from {figures['points_from']})")
    where = (f"the mesh nearest the plane per cell: {figures['empty_cells'] * 100:.0f} % of cells empty"
             + ("" if figures["offset_median"] is None else
                f", offset median {figures['offset_median']:.3g}, p90 {figures['offset_p90']:.3g}"))
    if figures["angle_mean_deg"] is None:
        return (f"no face of the mesh within {figures['band']:.3g} of the plane in the patch "
                f"({figures['patch_area']:.3g} area, points from {figures['points_from']}); {where}")
    return (f"{figures['faces']} faces over {figures['coverage'] * 100:.0f} % of a {figures['patch_area']:.3g} "
            f"patch (points from {figures['points_from']}): angle mean {figures['angle_mean_deg']:.2f} deg, "
            f"RMS {figures['angle_rms_deg']:.2f}, p95 {figures['angle_p95_deg']:.2f}; high-pass "
            f"{figures['highpass_mean_deg']:.2f} deg; distance RMS {figures['distance_rms']:.3g}; {where}"
            + ("" if figures["coverage"] >= LOW_COVERAGE else
               f" (the angles describe only {figures['coverage'] * 100:.0f} % of the patch: the rest of the wall "
               "is not where the photos put it)"))


def main() -> None:
    import _bootstrap
    from chamfer import read_ply_mesh    # the benchmarks' PLY reader (its module imports torch; the figures don't)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", type=Path, required=True, help="a PLY in the dataset's world coordinates")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="the dataset the mesh was trained on (a COLMAP model folder or workspace)")
    parser.add_argument("--points-from", choices=("colmap", "mesh"), default=None,
                        help="where the plane and patch come from (default: colmap with --dataset, else mesh)")
    parser.add_argument("--scene-type", default="object", choices=("object", "indoor", "outdoor"),
                        help="the training sphere's rule, as training used it: COLMAP points outside it are left out")
    parser.add_argument("--name", default=None, help="the result's name: smoothness_<name>.json (default: mesh stem)")
    for size in ("threshold", "cell_size", "band", "radius"):
        parser.add_argument(f"--{size.replace('_', '-')}", type=float, default=None,
                            help=f"{size} in world units, instead of SmoothnessSettings' fraction")
    args = parser.parse_args()
    points_from = args.points_from or ("colmap" if args.dataset else "mesh")
    if points_from == "colmap" and args.dataset is None:
        parser.error("--points-from colmap needs --dataset")
    context = _bootstrap.run_context()
    vertices, faces = read_ply_mesh(args.mesh)
    colmap_points, sphere = None, None
    if points_from == "colmap":
        colmap_points, sphere = dataset_points(args.dataset, scene_type=args.scene_type)
        if len(colmap_points) < 3:
            print(f"{args.dataset}: {len(colmap_points)} sparse points inside the training sphere; "
                  "the plane comes from the mesh", flush=True)
    settings = SmoothnessSettings(threshold=args.threshold, cell_size=args.cell_size, band=args.band,
                                  radius=args.radius)
    figures = mesh_smoothness(vertices, faces, colmap_points, settings)
    print(summary(figures), flush=True)
    payload = {**context, "benchmark": "surface_smoothness", "mesh": str(args.mesh),
               "dataset": str(args.dataset) if args.dataset else None,
               "sphere": None if sphere is None else {"center": sphere.center.tolist(), "radius": sphere.radius},
               **figures}
    for path in _bootstrap.write_results(f"smoothness_{args.name or args.mesh.stem}", payload):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
