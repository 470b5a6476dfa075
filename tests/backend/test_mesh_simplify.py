"""Decimation: meets the face budget and keeps the shape."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from carrara.backend.mesh.extract import extract_surface
from carrara.backend.mesh.simplify import decimate
from carrara.backend.mesh.topology import topology_report
from sdf_shapes import torus


@pytest.fixture(scope="module")
def dense():
    mesh = extract_surface(torus, 80)
    return mesh.vertices.numpy(), mesh.faces.numpy()


@pytest.mark.parametrize("budget", [8_000, 2_000, 500])
def test_budget_is_met_and_the_shape_kept(dense, budget):
    vertices, faces = dense
    v, f = decimate(vertices, faces, budget)
    assert v.dtype == np.float32 and f.dtype == np.int64
    assert budget * 0.9 <= len(f) <= budget
    assert np.unique(f).size == len(v), "no unused vertices"
    # Hausdorff-like, both ways: every kept vertex near the true surface, every original vertex near a kept one.
    assert np.abs(torus(torch.from_numpy(v)).numpy()).max() < 0.01
    spacing = np.sqrt(4 * np.pi ** 2 * 0.5 * 0.2 / (len(f) / 2))     # mean vertex spacing on the torus
    sample = vertices[:: max(1, len(vertices) // 2000)]
    nearest = np.sqrt(((sample[:, None, :] - v[None, :, :]) ** 2).sum(-1)).min(1)
    assert nearest.max() < 2.0 * spacing
    report = topology_report(v, f)
    assert report.boundary_edges == 0 and report.signed_volume == pytest.approx(2 * np.pi ** 2 * 0.5 * 0.04, rel=0.03)


def test_mesh_within_budget_is_returned_unchanged(dense):
    vertices, faces = dense
    v, f = decimate(vertices, faces, len(faces))
    assert v is vertices and f is faces


@pytest.mark.parametrize("budget", [0, 3, -5, 100.5])
def test_bad_budget_is_refused(dense, budget):
    with pytest.raises(ValueError, match="decimate_faces"):
        decimate(*dense, budget)


def test_large_meshes_take_the_faster_setting_and_keep_the_shape(dense, monkeypatch):
    from carrara.backend.mesh import simplify
    vertices, faces = dense
    reference = decimate(vertices, faces, 8_000)
    monkeypatch.setattr(simplify, "LARGE_MESH_FACES", len(faces) - 1)      # this mesh now counts as large
    v, f = decimate(vertices, faces, 8_000)
    assert 7_200 <= len(f) <= 8_000 and not np.array_equal(f, reference[1])
    assert np.abs(torus(torch.from_numpy(v)).numpy()).max() < 0.01
    assert topology_report(v, f).boundary_edges == 0
