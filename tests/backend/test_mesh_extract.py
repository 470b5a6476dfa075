"""Block-wise extraction of analytic SDFs: right surface, watertight, welded, outward, the same for any block size."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from carrara.backend.mesh.extract import extract_surface, plan_lattice
from carrara.backend.mesh.topology import topology_report
from sdf_shapes import torus as _torus

RADIUS = 0.61   # not on a lattice plane, so no sample is exactly zero


def sphere(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=1) - RADIUS


def torus(points: torch.Tensor, major: float = 0.55, minor: float = 0.22) -> torch.Tensor:
    return _torus(points, major, minor)


def two_spheres(points: torch.Tensor) -> torch.Tensor:
    """Union of two overlapping spheres whose seam and surfaces cross many block boundaries."""
    a = (points - torch.tensor([0.23, 0.05, -0.02])).norm(dim=1) - 0.4
    b = (points - torch.tensor([-0.27, -0.03, 0.04])).norm(dim=1) - 0.33
    return torch.minimum(a, b)


def box(points: torch.Tensor, half=(0.43, 0.31, 0.27)) -> torch.Tensor:
    q = points.abs() - torch.tensor(half)
    return q.clamp_min(0).norm(dim=1) + q.max(dim=1).values.clamp_max(0)


def _two_sphere_volume() -> float:
    r1, r2 = 0.4, 0.33
    d = float(np.linalg.norm([0.5, 0.08, -0.06]))
    lens = math.pi * (r1 + r2 - d) ** 2 * (d * d + 2 * d * r2 - 3 * r2 * r2 + 2 * d * r1 + 6 * r1 * r2 - 3 * r1 * r1) \
        / (12 * d)
    return 4 / 3 * math.pi * (r1 ** 3 + r2 ** 3) - lens


CASES = {
    "sphere": (sphere, 4 / 3 * math.pi * RADIUS ** 3),
    "torus": (torus, 2 * math.pi ** 2 * 0.55 * 0.22 ** 2),
    "two_spheres": (two_spheres, _two_sphere_volume()),
    "box": (box, 8 * 0.43 * 0.31 * 0.27),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("block_res", [3, 8, 16])
def test_analytic_surface_is_accurate_watertight_welded_and_outward(name, block_res):
    field, volume = CASES[name]
    resolution = 60
    cell = 2.0 / resolution
    mesh = extract_surface(field, resolution, block_res=block_res)
    vertices, faces = mesh.vertices, mesh.faces
    assert vertices.dtype == torch.float32 and faces.dtype == torch.int64
    # Vertices lie on the surface: linear interpolation along a cell edge errs well below half a cell.
    assert field(vertices).abs().max() < 0.5 * cell
    report = topology_report(vertices.numpy(), faces.numpy())
    assert report.closed_oriented_manifold, report
    # Outward orientation: the signed volume is the solid's volume (marching cubes cuts convex corners a bit).
    assert report.signed_volume == pytest.approx(volume, rel=0.02)
    # Welded: one vertex per position, so no seam of any block is doubled.
    assert np.unique(vertices.numpy(), axis=0).shape[0] == vertices.shape[0]


def test_sphere_radius_error_shrinks_with_resolution():
    """Mean radial error below 1 % of a cell, and falling like the square of the cell size."""
    errors = []
    for resolution in (32, 64, 128):
        vertices = extract_surface(sphere, resolution).vertices
        errors.append(float((vertices.norm(dim=1) - RADIUS).abs().mean()))
        assert errors[-1] < 0.01 * (2.0 / resolution)
    assert errors[0] > 3 * errors[1] > 9 * errors[2]


def test_block_size_does_not_change_the_mesh():
    meshes = [extract_surface(two_spheres, 48, block_res=b) for b in (3, 5, 48)]
    reference = np.sort(meshes[0].vertices.numpy().view([("", np.float32)] * 3), axis=0)
    for mesh in meshes[1:]:
        assert mesh.faces.shape == meshes[0].faces.shape
        assert np.array_equal(np.sort(mesh.vertices.numpy().view([("", np.float32)] * 3), axis=0), reference)


def _noise(points: torch.Tensor) -> torch.Tensor:
    """Independent pseudo-random values at the lattice points of resolution 48, positive near the border.

    It has no Lipschitz bound at all, so the coarse pass misses surface and only the closure makes it whole.
    """
    q = torch.round((points + 1.0) * 24).long()
    h = (q[:, 0] * 73856093) ^ (q[:, 1] * 19349663) ^ (q[:, 2] * 83492791)
    value = (h % 2001).float() / 1000.0 - 1.0
    return torch.where(points.abs().amax(1) < 0.5, value, torch.ones_like(value))


@pytest.mark.parametrize("block_res", [4, 7])
def test_random_field_is_closed_by_the_block_closure(block_res):
    mesh = extract_surface(_noise, 48, block_res=block_res)
    assert mesh.stats["closure_rounds"] > 1, "the torture field should defeat the coarse pass"
    report = topology_report(mesh.vertices.numpy(), mesh.faces.numpy())
    assert report.closed_oriented_manifold, report
    dense = extract_surface(_noise, 48, block_res=block_res, lipschitz=None)
    assert dense.faces.shape[0] >= mesh.faces.shape[0] > 0.9 * dense.faces.shape[0]


def test_coarse_pass_evaluates_a_small_part_of_the_lattice():
    mesh = extract_surface(sphere, 256, block_res=8)
    assert mesh.stats["closure_rounds"] == 1
    # The evaluated shell thins with resolution: 15 % of the lattice here, about 1 % at resolution 2048.
    assert mesh.stats["points_evaluated"] < 0.2 * mesh.stats["lattice_points"]


def test_surface_is_kept_inside_the_unit_sphere():
    plane = lambda p: p[:, 2] - 0.1   # an infinite plane: only the disc inside the unit sphere remains
    mesh = extract_surface(plane, 40)
    radius = mesh.vertices.norm(dim=1)
    assert radius.max() <= 1.0 and radius.max() > 0.95
    report = topology_report(mesh.vertices.numpy(), mesh.faces.numpy())
    assert report.boundary_edges > 0 and report.overused_edges == 0 and report.nonmanifold_vertices == 0


def test_without_sphere_clipping_the_surface_fills_the_lattice():
    mesh = extract_surface(lambda p: p[:, 2] - 0.1, 40, clip_to_sphere=False)
    assert mesh.vertices[:, :2].abs().max() == pytest.approx(1.0)   # the plane runs to the lattice's sides


def test_crop_bounds_cut_the_surface():
    mesh = extract_surface(sphere, 64, bounds=((-1, -1, 0.0), (1, 1, 1)))
    assert mesh.vertices[:, 2].min() >= -1e-6
    assert (mesh.vertices.norm(dim=1) - RADIUS).abs().max() < 0.02


def test_nan_from_a_diverged_network_reads_as_outside():
    def broken(points):
        values = sphere(points)
        values[points[:, 0] > 0.3] = float("nan")
        return values
    mesh = extract_surface(broken, 32)
    assert torch.isfinite(mesh.vertices).all() and mesh.faces.shape[0] > 0
    assert topology_report(mesh.vertices.numpy(), mesh.faces.numpy()).closed_oriented_manifold


def test_empty_field_gives_an_empty_mesh():
    mesh = extract_surface(lambda p: torch.ones(p.shape[0]), 32)
    assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3)


def test_each_lattice_point_is_evaluated_once():
    seen: list[torch.Tensor] = []

    def recording(points):
        seen.append(points.clone())
        return sphere(points)
    extract_surface(recording, 32, block_res=4, lipschitz=None, eval_batch=1000)
    points = torch.cat(seen)
    assert torch.unique(points, dim=0).shape[0] == points.shape[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"resolution": 1}, "resolution"),
    ({"resolution": 64.0}, "resolution"),
    ({"block_res": 1}, "block_res"),
    ({"bounds": ((0, 0, 0), (0, 1, 1))}, "bounds"),
    ({"bounds": ((0, 0), (1, 1))}, "bounds"),
])
def test_bad_settings_are_refused(kwargs, message):
    settings = {"resolution": 32, "block_res": 8, "bounds": None} | kwargs
    with pytest.raises(ValueError, match=message):
        plan_lattice(**settings)


@pytest.mark.parametrize("kwargs, message", [({"lipschitz": 0.0}, "lipschitz"), ({"eval_batch": 0}, "eval_batch")])
def test_bad_extraction_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        extract_surface(sphere, 16, **kwargs)


def test_sdf_with_wrong_output_shape_is_refused():
    with pytest.raises(ValueError, match="sdf_fn must return one value per point"):
        extract_surface(lambda p: p, 16)
