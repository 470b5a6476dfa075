"""Clean-up over the whole mesh: components, floaters, cavities, degenerate faces, unused vertices, normals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from carrara.backend.mesh.cleanup import (compact_vertices, connected_components, remove_cavities,
                                          remove_degenerate_faces, remove_small_components, vertex_normals)
from carrara.backend.mesh.extract import extract_surface
from carrara.backend.mesh.topology import topology_report


def _balls(points: torch.Tensor) -> torch.Tensor:
    """A big sphere, a middle one and two small floaters, all disjoint."""
    centres = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.72, 0.0], [0.62, -0.55, 0.1], [-0.6, -0.5, -0.3]])
    radii = torch.tensor([0.45, 0.18, 0.05, 0.04])
    return ((points[:, None, :] - centres).norm(dim=2) - radii).min(dim=1).values


def _components_by_walk(faces: np.ndarray, n: int) -> np.ndarray:
    """Reference labels by a plain graph walk, for comparison with the parallel union-find."""
    neighbours = [[] for _ in range(n)]
    for a, b, c in faces.tolist():
        neighbours[a] += [b, c]
        neighbours[b] += [a, c]
        neighbours[c] += [a, b]
    label = np.full(n, -1)
    for start in range(n):
        if label[start] >= 0:
            continue
        stack = [start]
        label[start] = start
        while stack:
            for other in neighbours[stack.pop()]:
                if label[other] < 0:
                    label[other] = start
                    stack.append(other)
    return label


def test_components_match_a_graph_walk_on_shuffled_indices():
    mesh = extract_surface(_balls, 48)
    n = mesh.vertices.shape[0]
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    faces = permutation[mesh.faces]   # scrambled numbering: the hooking order is no longer spatial
    labels = connected_components(faces, n).numpy()
    reference = _components_by_walk(faces.numpy(), n)
    assert len(np.unique(labels)) == len(np.unique(reference)) == 4
    # Same partition: each reference component maps to exactly one label and back.
    pairs = np.unique(np.stack((labels, reference), 1), axis=0)
    assert len(pairs) == 4
    for value in np.unique(labels):   # each label is the smallest vertex index of its component
        assert np.flatnonzero(labels == value).min() == value


def test_floaters_go_and_the_big_pieces_stay():
    mesh = extract_surface(_balls, 64)
    vertices, faces = remove_small_components(mesh.vertices, mesh.faces, 0.02)
    labels = connected_components(faces, vertices.shape[0])
    assert len(torch.unique(labels)) == 2     # the two balls of 0.45 and 0.18; the floaters were < 2 %
    distance = _balls(vertices).abs().max()
    assert distance < 2.0 / 64
    assert vertices[:, 0].max() < 0.5         # nothing left near the floaters at x ~ +0.6 and -0.6
    assert vertices[:, 0].min() > -0.5
    only_largest_v, only_largest_f = remove_small_components(mesh.vertices, mesh.faces, 1.0)
    assert only_largest_v.norm(dim=1).max() < 0.46
    kept_all = remove_small_components(mesh.vertices, mesh.faces, 0.0)
    assert kept_all[1].shape == mesh.faces.shape


def test_floater_fraction_out_of_range_is_refused():
    mesh = extract_surface(_balls, 24)
    with pytest.raises(ValueError, match="min_fraction"):
        remove_small_components(mesh.vertices, mesh.faces, 1.5)


def test_degenerate_faces_and_unused_vertices_go():
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5], [float("nan"), 0, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 0, 1], [1, 2, 4], [2, 1, 2]])
    v, f = remove_degenerate_faces(vertices, faces)
    assert v.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]] and f.tolist() == [[0, 1, 2]]
    v, f = compact_vertices(vertices, torch.tensor([[3, 1, 2]]))
    assert v.shape[0] == 3 and f.tolist() == [[2, 0, 1]]


def test_vertex_normals_point_outward_on_a_sphere():
    mesh = extract_surface(lambda p: p.norm(dim=1) - 0.6, 40)
    normals = vertex_normals(mesh.vertices, mesh.faces)
    radial = mesh.vertices / mesh.vertices.norm(dim=1, keepdim=True)
    assert torch.allclose(normals.norm(dim=1), torch.ones(len(normals)))
    assert (normals * radial).sum(1).min() > 0.99


def test_bubbles_inside_a_solid_go_and_open_pieces_stay():
    def hollow(points: torch.Tensor) -> torch.Tensor:   # a ball of radius 0.8 with a bubble of radius 0.3 inside
        r = points.norm(dim=1)
        return torch.maximum(r - 0.8, 0.3 - r)

    mesh = extract_surface(hollow, 64)
    vertices, faces = remove_cavities(mesh.vertices, mesh.faces)
    assert 0 < faces.shape[0] < mesh.faces.shape[0]
    assert vertices.norm(dim=1).min() > 0.75, "only the bubble's wall went"
    report = topology_report(vertices.numpy(), faces.numpy())
    assert report.closed_oriented_manifold and report.signed_volume == pytest.approx(4 / 3 * np.pi * 0.8 ** 3, rel=0.02)

    # The same bubble's wall cut open (a piece with a border) is kept: its volume says nothing.
    inner = mesh.vertices[mesh.faces].norm(dim=2).amax(1) < 0.5
    cut = mesh.faces[inner & (mesh.vertices[mesh.faces][:, :, 2].amax(1) < 0.2)]
    v, f = remove_cavities(mesh.vertices, cut)
    assert f.shape[0] == cut.shape[0]
