"""Vertex clustering, the first cut of huge meshes: the face count asked for, the shape kept, no holes opened."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from carrara.backend.mesh import simplify
from carrara.backend.mesh.clustering import _merge_faces, cluster_at, cluster_vertices
from carrara.backend.mesh.extract import extract_surface
from carrara.backend.mesh.topology import topology_report
from sdf_shapes import torus

TORUS_VOLUME = 2 * np.pi ** 2 * 0.5 * 0.2 ** 2


@pytest.fixture(scope="module")
def dense():
    mesh = extract_surface(torus, 160)
    return mesh.vertices, mesh.faces


@pytest.mark.parametrize("share", [4, 10])
def test_the_face_count_asked_for_and_the_surface_kept(dense, share):
    vertices, faces = dense
    target = faces.shape[0] // share
    v, f = cluster_vertices(vertices, faces, target)
    assert v.dtype == vertices.dtype and f.dtype == faces.dtype
    assert target / 1.5 <= f.shape[0] <= 1.5 * target
    assert torch.unique(f).numel() == v.shape[0], "no unused vertices"
    # Quadric placement puts the merged vertices back on the surface: far closer than the cell they merge.
    cell = 2.0 * np.sqrt(share) / 160
    assert torus(v).abs().max() < 0.1 * cell
    assert torus(v).abs().mean() < 0.01 * cell
    report = topology_report(v.numpy(), f.numpy())
    assert report.boundary_edges == 0 and report.misoriented_edges == 0
    assert report.signed_volume == pytest.approx(TORUS_VOLUME, rel=0.02)


def test_corners_come_out_sharper_than_marching_cubes_left_them():
    """A cube's corners are where the planes of its faces meet, not where a cell's vertices average: clustering
    at 5 cells of the extraction puts a vertex nearer each corner than marching cubes' chamfer did."""
    def cube(points: torch.Tensor) -> torch.Tensor:
        return (points.abs() - 0.5).amax(1)

    mesh = extract_surface(cube, 96, lipschitz=None)
    v, f = cluster_at(mesh.vertices, mesh.faces, 0.1)
    corner_gap = lambda points: float((points.abs() - 0.5).norm(dim=1).min())   # noqa: E731
    assert corner_gap(v) < 0.5 * corner_gap(mesh.vertices)
    assert cube(v).abs().max() < 0.1 * 0.1
    assert torch.allclose(v.abs().amax(0), torch.tensor(0.5), atol=1e-4), "the flat faces stay where they were"


def test_duplicates_merge_and_opposite_pairs_cancel():
    faces = torch.tensor([[0, 1, 2], [1, 2, 0],      # the same face twice: one is kept
                          [3, 4, 5], [5, 4, 3],      # a collapsed wall, both sides: none kept
                          [6, 7, 8], [8, 7, 6], [7, 6, 8],   # one against two: the majority's orientation
                          [0, 0, 9]])                # a repeated vertex: dropped
    merged = {tuple(row) for row in _merge_faces(faces).tolist()}
    assert merged == {(0, 1, 2), (6, 8, 7)}


def test_huge_meshes_are_clustered_before_the_edge_collapse(dense, monkeypatch):
    vertices, faces = dense
    budget = faces.shape[0] // 20
    direct = simplify.reduce_to_budget(vertices, faces, budget)
    monkeypatch.setattr(simplify, "LARGE_MESH_FACES", faces.shape[0] // 10)   # this mesh now counts as huge
    v, f = simplify.reduce_to_budget(vertices, faces, budget)
    assert 0.9 * budget <= f.shape[0] <= budget
    assert f.shape != direct[1].shape or not torch.equal(f, direct[1]), "the clustering path was taken"
    assert torus(v).abs().max() < 0.01
    report = topology_report(v.numpy(), f.numpy())
    assert report.boundary_edges == 0
    assert report.signed_volume == pytest.approx(TORUS_VOLUME, rel=0.03)


def test_a_mesh_without_area_is_returned_as_it_is():
    vertices = torch.zeros(3, 3)
    faces = torch.tensor([[0, 1, 2]])
    v, f = cluster_vertices(vertices, faces, 10)
    assert v is vertices and f is faces
