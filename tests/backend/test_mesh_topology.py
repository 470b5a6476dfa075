"""The topology report that the other mesh tests rely on must see every defect it names."""
from __future__ import annotations

import numpy as np
import pytest

from carrara.backend.mesh.topology import topology_report

TETRA_VERTICES = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
TETRA_FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def test_closed_tetrahedron_is_a_closed_oriented_manifold():
    report = topology_report(TETRA_VERTICES, TETRA_FACES)
    assert report.closed_oriented_manifold
    assert report.signed_volume == pytest.approx(1 / 6)


def test_inside_out_tetrahedron_has_negative_volume():
    assert topology_report(TETRA_VERTICES, TETRA_FACES[:, ::-1]).signed_volume == pytest.approx(-1 / 6)


def test_missing_face_leaves_boundary_edges():
    report = topology_report(TETRA_VERTICES, TETRA_FACES[:3])
    assert report.boundary_edges == 3 and not report.closed_oriented_manifold


def test_flipped_face_is_misoriented():
    faces = TETRA_FACES.copy()
    faces[3] = faces[3][::-1]
    report = topology_report(TETRA_VERTICES, faces)
    assert report.misoriented_edges == 3 and report.boundary_edges == 0


def test_fin_makes_an_overused_edge():
    vertices = np.vstack([TETRA_VERTICES, [[1, 1, 1]]])
    faces = np.vstack([TETRA_FACES, [[1, 2, 4]]])
    assert topology_report(vertices, faces).overused_edges == 1


def test_two_tetrahedra_touching_at_a_vertex_make_it_nonmanifold():
    vertices = np.vstack([TETRA_VERTICES, -TETRA_VERTICES[1:]])
    second = np.where(TETRA_FACES == 0, 0, TETRA_FACES + 3)[:, ::-1]   # mirrored, so flip to stay outward
    report = topology_report(vertices, np.vstack([TETRA_FACES, second]))
    assert report.nonmanifold_vertices == 1
    assert report.boundary_edges == report.overused_edges == report.misoriented_edges == 0
