"""benchmarks/chamfer.py on meshes whose distances are known in closed form."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from testkit import REPO_ROOT

_spec = importlib.util.spec_from_file_location("bench_chamfer", REPO_ROOT / "benchmarks" / "chamfer.py")
chamfer_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chamfer_mod)


def icosphere(radius: float, subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed sphere mesh of near-uniform triangles (every vertex exactly on the sphere)."""
    t = (1.0 + 5 ** 0.5) / 2.0
    vertices = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                         [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], np.float64)
    faces = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                      [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                      [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = len(vertices) + inverse.reshape(3, -1).T                      # midpoints of edges 01, 12, 20
        vertices = np.concatenate([vertices, 0.5 * (vertices[unique[:, 0]] + vertices[unique[:, 1]])])
        a, b, c = faces.T
        ab, bc, ca = mid.T
        faces = np.concatenate([np.stack(f, 1) for f in ([a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca])])
    return radius * vertices / np.linalg.norm(vertices, axis=1, keepdims=True), faces


def test_closest_point_on_a_triangle_in_every_region():
    a, b, c = (torch.tensor(v, dtype=torch.float64) for v in ([0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]))
    cases = {  # query -> expected closest point
        (0.2, 0.2, 0.5): (0.2, 0.2, 0.0),      # above the face
        (-1.0, -1.0, 0.3): (0.0, 0.0, 0.0),    # beyond vertex A
        (2.0, -0.5, 0.0): (1.0, 0.0, 0.0),     # beyond vertex B
        (-0.2, 3.0, 1.0): (0.0, 1.0, 0.0),     # beyond vertex C
        (0.5, -1.0, 0.0): (0.5, 0.0, 0.0),     # beside edge AB
        (-2.0, 0.4, 0.0): (0.0, 0.4, 0.0),     # beside edge AC
        (1.0, 1.0, 2.0): (0.5, 0.5, 0.0),      # beside edge BC
    }
    query = torch.tensor(list(cases), dtype=torch.float64)
    got = chamfer_mod.closest_points_on_triangles(query, a, b, c)
    torch.testing.assert_close(got, torch.tensor(list(cases.values()), dtype=torch.float64))


def test_closest_point_is_never_beaten_by_a_dense_sample_of_the_triangle():
    gen = torch.Generator().manual_seed(3)
    a, b, c = (torch.randn(64, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    p = 2.0 * torch.randn(64, 3, generator=gen, dtype=torch.float64)
    exact = (chamfer_mod.closest_points_on_triangles(p, a, b, c) - p).norm(dim=-1)
    u, v = torch.meshgrid(torch.linspace(0, 1, 201, dtype=torch.float64), torch.linspace(0, 1, 201,
                          dtype=torch.float64), indexing="ij")
    inside = (u + v) <= 1.0
    u, v = u[inside], v[inside]
    dense = a[:, None] + u[None, :, None] * (b - a)[:, None] + v[None, :, None] * (c - a)[:, None]
    sampled = (dense - p[:, None]).norm(dim=-1).min(dim=1).values
    assert torch.all(exact <= sampled + 1e-12)
    assert torch.all(sampled - exact < 0.05)


def test_nearest_vertices_match_a_brute_force_search():
    gen = torch.Generator().manual_seed(5)
    vertices = torch.from_numpy(icosphere(1.0, 4)[0]).float()
    on_surface = vertices[torch.randint(len(vertices), (1000,), generator=gen)]
    near = on_surface + 0.02 * torch.randn(1000, 3, generator=gen)
    far = 3.0 * torch.randn(200, 3, generator=gen)                            # floaters, inside and out
    points = torch.cat([near, far])
    found = chamfer_mod.nearest_vertices(points, vertices, 8)
    exact = torch.cdist(points, vertices, compute_mode="donot_use_mm_for_euclid_dist")
    expected = exact.topk(8, dim=1, largest=False).values
    got = (vertices[found] - points[:, None]).norm(dim=-1).sort(dim=1).values
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_identical_meshes_are_zero_apart():
    vertices, faces = icosphere(1.0, 3)
    result = chamfer_mod.chamfer(vertices, faces, vertices, faces, radius=1.0, samples=5_000, device="cpu")
    assert result["chamfer"] < 1e-5
    assert result["ignored_pred_fraction"] == 0.0 == result["ignored_gt_fraction"]


def test_concentric_spheres_differ_by_the_radius_gap():
    inner = icosphere(1.0, 4)
    outer = icosphere(1.1, 4)
    result = chamfer_mod.chamfer(*outer, *inner, radius=2.0, samples=5_000, device="cpu")
    # The gap is 0.1, a fraction 0.05 of the radius 2; faceting moves the inner surface by < 1e-3.
    for key in ("accuracy", "completeness", "chamfer", "accuracy_median"):
        assert result[key] == pytest.approx(0.05, abs=1e-3), key


def test_a_cap_over_the_ground_truth_hole_is_ignored():
    vertices, faces = icosphere(1.0, 4)
    open_faces = faces[vertices[faces].mean(axis=1)[:, 2] > -0.8]  # a hole around the south pole
    result = chamfer_mod.chamfer(vertices, faces, vertices, open_faces, radius=1.0, samples=5_000, device="cpu")
    cap_area_fraction = (1.0 - 0.8) / 2.0                            # a spherical cap's area is 2*pi*r*h
    assert result["ignored_pred_fraction"] == pytest.approx(cap_area_fraction, abs=0.03)
    assert result["accuracy"] < 1e-4
    unguarded = chamfer_mod.chamfer(vertices, faces, vertices, open_faces, radius=1.0, samples=5_000,
                                    boundary_margin=-1.0, device="cpu")
    assert unguarded["accuracy"] > 0.01  # the cap is far from the scanned surface


def _write_ply(path, vertices, faces):
    vertex = np.array([tuple(v) for v in vertices], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    face = np.array([(list(f),) for f in faces], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(path))


def test_ground_truth_is_moved_into_the_world_frame(tmp_path):
    vertices, faces = icosphere(0.1, 3)
    mesh_to_world = np.eye(4)
    mesh_to_world[:3, :3] = 10.0 * np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    mesh_to_world[:3, 3] = [0.5, -0.2, 0.3]
    _write_ply(tmp_path / "gt.ply", vertices, faces)
    _write_ply(tmp_path / "pred.ply", vertices @ mesh_to_world[:3, :3].T + mesh_to_world[:3, 3], faces)
    meta = {"gt_mesh": "gt.ply", "gt_mesh_source": "", "mesh_to_world": mesh_to_world.tolist(),
            "sphere": {"center": [0.5, -0.2, 0.3], "radius": 1.1}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    result = chamfer_mod.chamfer_against_meta(tmp_path / "pred.ply", tmp_path / "meta.json", samples=5_000,
                                              device="cpu")
    assert result["chamfer"] < 1e-5
    _write_ply(tmp_path / "pred.ply", vertices, faces)  # left in scan coordinates: far off
    assert chamfer_mod.chamfer_against_meta(tmp_path / "pred.ply", tmp_path / "meta.json", samples=5_000,
                                            device="cpu")["chamfer"] > 0.1
