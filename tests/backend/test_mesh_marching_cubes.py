"""Marching cubes: the generated table makes closed, consistently oriented 2-manifolds for every cube case."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from carrara.backend.mesh.marching_cubes import (CORNER_OFFSETS, FACES, marching_cubes, march_grids,
                                                 triangle_table)
from carrara.backend.mesh.topology import topology_report


def _sign_change_edges(volume: np.ndarray) -> int:
    inside = volume < 0
    return int(sum((np.diff(inside.astype(np.int8), axis=a) != 0).sum() for a in range(3)))


def _assert_closed_surface(volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    vertices, faces = marching_cubes(volume)
    report = topology_report(vertices.numpy(), faces.numpy())
    assert report.closed_oriented_manifold, report
    if faces.shape[0]:
        assert report.signed_volume > 0, "normals must point towards positive values (outward)"
    return vertices, faces


def test_table_covers_every_case_and_face_decision():
    table, counts = triangle_table()
    assert table.shape[0] == 256 * 64 and counts.shape == (256 * 64,)
    assert counts[0] == 0 and counts[255 * 64] == 0
    assert all(counts[c * 64] > 0 for c in range(1, 255))
    used = table[table >= 0]
    assert used.min() >= 0 and used.max() <= 12   # 12 edges and the rare loop-centre vertex
    # Complementary cases (inside and outside swapped, face decisions unchanged) cut the same cell edges.
    for case in range(256):
        edges = set(table[case * 64][: counts[case * 64]].ravel()) - {12}
        twin = set(table[(255 - case) * 64][: counts[(255 - case) * 64]].ravel()) - {12}
        assert edges == twin


@pytest.mark.parametrize("seed", range(3))
def test_every_case_assembled_is_a_closed_oriented_manifold(seed):
    """All 256 corner patterns with random magnitudes, each cube in its own pocket of an outside lattice."""
    rng = np.random.default_rng(seed)
    volume = np.ones((49, 49, 4))
    for case in range(256):
        cell = np.where([(case >> k) & 1 for k in range(8)], -1.0, 1.0) * rng.uniform(0.05, 1.0, 8)
        i, j = divmod(case, 16)
        for k, (dx, dy, dz) in enumerate(CORNER_OFFSETS.tolist()):
            volume[3 * i + 1 + dx, 3 * j + 1 + dy, 1 + dz] = cell[k]
    grid = torch.tensor(volume, dtype=torch.float32)
    _assert_closed_surface(grid)
    # One vertex on each lattice edge whose ends differ in sign, and none on other edges (keys past the edge
    # range are the few loop-centre vertices).
    keys = march_grids(grid[None], torch.zeros((1, 3), dtype=torch.int64), grid.shape).vertex_keys
    assert int((keys < 3 * grid.numel()).sum()) == _sign_change_edges(volume)


def test_ambiguous_faces_are_decided_alike_by_both_cells():
    """The checkerboard cube (all six faces ambiguous) under many decider outcomes, among neighbouring cells."""
    checker = np.array([(-1.0 if (x + y + z) % 2 else 1.0) for x, y, z in CORNER_OFFSETS.tolist()])
    volume = np.ones((25, 25, 4))
    for bits in range(64):
        values = checker.copy()
        # Scale one diagonal of each face to tip its asymptotic decider one way or the other.
        for f, (_, _, corners) in enumerate(FACES):
            values[[corners[0], corners[2]]] *= 1.5 if (bits >> f) & 1 else 0.6
        i, j = divmod(bits, 8)
        for k, (dx, dy, dz) in enumerate(CORNER_OFFSETS.tolist()):
            volume[3 * i + 1 + dx, 3 * j + 1 + dy, 1 + dz] = values[k]
    _assert_closed_surface(torch.tensor(volume, dtype=torch.float32))


@pytest.mark.parametrize("kind", ["gaussian", "ternary"])
def test_random_noise_fields_are_watertight(kind):
    """Torture: independent random values at every point (ternary values add exact zeros and decider ties)."""
    generator = torch.Generator().manual_seed(7)
    for _ in range(2):
        if kind == "gaussian":
            inner = torch.randn((15, 16, 17), generator=generator)
        else:
            inner = torch.randint(-1, 2, (15, 16, 17), generator=generator).float()
        volume = torch.nn.functional.pad(inner, (1, 1, 1, 1, 1, 1), value=1.0)
        vertices, faces = _assert_closed_surface(volume)
        assert faces.shape[0] > 5_000
        assert np.unique(vertices.numpy(), axis=0).shape[0] == vertices.shape[0], "two vertices at one position"


def test_vertices_interpolate_the_zero_crossing_linearly():
    volume = torch.ones((2, 2, 2))
    volume[0, 0, 0] = -0.25   # crossing at a quarter of each edge from the corner
    vertices, faces = marching_cubes(volume)
    assert faces.shape == (1, 3)
    expected = {(0.2, 0.0, 0.0), (0.0, 0.2, 0.0), (0.0, 0.0, 0.2)}
    assert {tuple(np.round(v, 6)) for v in vertices.tolist()} == expected
    a, b, c = vertices[faces[0]]
    assert (torch.linalg.cross(b - a, c - a) > 0).all(), "the normal points away from the inside corner"


def test_grids_of_one_lattice_weld_by_key():
    """Two halves of a volume marched separately produce the same keys on their shared plane."""
    g = torch.linspace(-1, 1, 17)
    volume = (torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).norm(dim=-1) - 0.7)
    whole = march_grids(volume[None], torch.zeros((1, 3), dtype=torch.int64), (17, 17, 17))
    halves = march_grids(torch.stack((volume[:9], volume[8:])), torch.tensor([[0, 0, 0], [8, 0, 0]]), (17, 17, 17))
    assert torch.equal(torch.unique(halves.vertex_keys), whole.vertex_keys)
    assert halves.faces.shape == whole.faces.shape


def test_cells_past_the_limit_are_left_out():
    volume = torch.full((1, 5, 5, 5), -1.0)
    volume[0, 2, 2, 2] = 1.0
    full = march_grids(volume, torch.zeros((1, 3), dtype=torch.int64), (5, 5, 5))
    cut = march_grids(volume, torch.zeros((1, 3), dtype=torch.int64), (5, 5, 5), cell_limit=(2, 4, 4))
    assert full.faces.shape[0] == 8 and cut.faces.shape[0] == 4


@pytest.mark.parametrize("shape", [(4, 4), (1, 4, 4)])
def test_bad_volume_is_refused(shape):
    with pytest.raises(ValueError, match="3-D"):
        marching_cubes(torch.zeros(shape))


def test_constant_volume_has_no_surface():
    for value in (-1.0, 1.0, 0.0):
        vertices, faces = marching_cubes(torch.full((3, 3, 3), value))
        assert vertices.shape == (0, 3) and faces.shape == (0, 3)
