"""Marching cubes in plain PyTorch: one vectorised code path for CUDA and the CPU, watertight by construction.

Why our own: the GPU marching-cubes packages on PyPI are either huge (warp-lang's wheels are too big to carry to
the GPU machine) or unmaintained builds (cumcubes 0.0.3 from 2022, diso, pytorch3d's source builds), and the CPU
ones (PyMCubes, scikit-image) are what makes Neuralangelo's extraction take minutes. Here every step is a tensor
operation over all cells of a batch of blocks, so the same code runs on the GPU for the product and on the CPU
for tests.

The lookup table is generated when first used, from the definition of the algorithm (Lorensen & Cline 1987)
rather than typed in: for each of the 256 inside/outside patterns of a cube's corners, the zero set crosses the
cube's boundary in closed loops of edge points, and each loop is filled with one disk of triangles. The classic
table has holes because two cubes sharing an ambiguous face (two diagonal corners inside, the other two outside)
may join the face's four edge points differently. We resolve each ambiguous face with the asymptotic decider
(Nielson & Hamann 1991): the diagonal pair whose value product is larger is the connected one. The decision
depends only on the face's four values, computed in the same order by both cubes, so neighbours always agree
(ties break the same way in both). The table is therefore indexed by the 8 corner bits and 6 face-decision bits
(16384 entries). Filling each loop with its own disk (no tunnels through the cube) needs no interior test. A
disk's diagonals avoid joining two edge points of a face that the cube across it could join too (else an edge
would lie in four triangles); the 12 loops of 9 points this rule leaves without a triangulation get a vertex at
their centre. The result is a closed, consistently oriented 2-manifold wherever the lattice is complete.

Conventions: a value < 0 is inside (SDF), a value >= 0 outside; triangles are counter-clockwise seen from the
outside, so normals point towards positive values. Corner k of a cell sits at offset (k & 1, k >> 1 & 1,
k >> 2 & 1). A vertex is keyed by its lattice edge, ``(point_index * 3 + axis)``, so vertices computed by
different blocks on a shared edge are the same vertex and can be welded exactly.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

# Corner k of a cell: its offset along x, y, z.
CORNER_OFFSETS = np.array([[k & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)], dtype=np.int64)
# The 12 cell edges as (start corner, axis); the end corner is start | (1 << axis).
EDGES = [(corner, axis) for axis in range(3) for corner in range(8) if not (corner >> axis) & 1]
EDGE_START = np.array([corner for corner, _ in EDGES], dtype=np.int64)
EDGE_AXIS = np.array([axis for _, axis in EDGES], dtype=np.int64)
EDGE_END = EDGE_START | (1 << EDGE_AXIS)


def _face_corners(axis: int, side: int) -> list[int]:
    """The four corners of a cell face in cyclic order, the same order for both cells sharing the face."""
    u, v = (a for a in range(3) if a != axis)
    return [(side << axis) | (cu << u) | (cv << v) for cu, cv in ((0, 0), (1, 0), (1, 1), (0, 1))]


# Face f = 2 * axis + side. Its decision bit says "the diagonal (corner 0, corner 2) of the face is connected".
FACES = [(axis, side, _face_corners(axis, side)) for axis in range(3) for side in (0, 1)]
FACE_CORNERS = np.array([corners for _, _, corners in FACES], dtype=np.int64)
TABLE_SIZE = 256 * 64


_CORNERS = CORNER_OFFSETS.tolist()
_MIDPOINTS = ((CORNER_OFFSETS[EDGE_START] + CORNER_OFFSETS[EDGE_END]) / 2.0).tolist()


def _edge_index(a: int, b: int) -> int:
    start, end = min(a, b), max(a, b)
    axis = (end ^ start).bit_length() - 1
    return EDGES.index((start, axis))


def _loops(config: int, face_bits: int) -> list[list[int]]:
    """Closed loops of cell edges where the zero set meets the cell's boundary, oriented outside-on-the-left."""
    inside = [(config >> k) & 1 for k in range(8)]
    successor: dict[int, int] = {}
    for f, (axis, side, corners) in enumerate(FACES):
        ins = [inside[c] for c in corners]
        crossings = [i for i in range(4) if ins[i] != ins[(i + 1) % 4]]   # face edge i joins corners i and i+1
        if not crossings:
            continue
        if len(crossings) == 2:
            outside_ref = next(corners[i] for i in range(4) if not ins[i])
            segments = [(crossings[0], crossings[1], outside_ref)]
        else:   # ambiguous face: cut off the two corners of the diagonal that is not connected
            cut = (1, 3) if (face_bits >> f) & 1 else (0, 2)
            segments = [((i - 1) % 4, i, corners[i] if not ins[i] else corners[(i + 1) % 4]) for i in cut]
        normal = [0.0, 0.0, 0.0]
        normal[axis] = 1.0 if side else -1.0
        for i, j, outside_ref in segments:
            p = _edge_index(corners[i], corners[(i + 1) % 4])
            q = _edge_index(corners[j], corners[(j + 1) % 4])
            # Orient p -> q so that the outside part of the face lies to the left, seen from outside the cell:
            # chained over all faces this orients every loop consistently.
            d = [b - a for a, b in zip(_MIDPOINTS[p], _MIDPOINTS[q])]
            left = (normal[1] * d[2] - normal[2] * d[1], normal[2] * d[0] - normal[0] * d[2],
                    normal[0] * d[1] - normal[1] * d[0])
            to_outside = [c - m for c, m in zip(_CORNERS[outside_ref], _MIDPOINTS[p])]
            if sum(a * b for a, b in zip(left, to_outside)) < 0:
                p, q = q, p
            if p in successor:
                raise AssertionError(f"marching cubes table: edge {p} starts two segments (case {config})")
            successor[p] = q
    if sorted(successor) != sorted(successor.values()):
        raise AssertionError(f"marching cubes table: open loop in case {config}, faces {face_bits:06b}")
    loops, seen = [], set()
    for start in sorted(successor):
        if start in seen:
            continue
        loop, edge = [], start
        while edge not in seen:
            seen.add(edge)
            loop.append(edge)
            edge = successor[edge]
        loops.append(loop)
    return loops


# Pseudo edge index of a vertex at the centre of a cell's loop, for the few loops that cannot be triangulated.
CENTRE = 12


def _triangulate(loop: list[int]) -> list[tuple[int, int, int]]:
    """Triangulate one loop without a diagonal that the cell across a face could also choose.

    Two cells sharing a face must not both join the same two edge points of that face by a diagonal: that edge
    would lie in four triangles, not a manifold. Among the allowed triangulations, the one with the shortest
    diagonals (a dynamic programme over the polygon, at most 12 vertices) gives the best-shaped triangles.
    """
    n = len(loop)

    def weight(i: int, j: int) -> float:
        if (j - i) % n in (1, n - 1):
            return 0.0   # a side of the loop
        if _EDGE_FACES[loop[i]] & _EDGE_FACES[loop[j]]:
            return math.inf
        return math.dist(_MIDPOINTS[loop[i]], _MIDPOINTS[loop[j]])

    cost = [[0.0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for span in range(2, n):
        for i in range(n - span):
            j = i + span
            cost[i][j], split[i][j] = min((cost[i][k] + cost[k][j] + weight(i, k) + weight(k, j), k)
                                          for k in range(i + 1, j))
    if math.isinf(cost[0][n - 1]):   # a few 9-point loops: fan around a vertex at the loop's centre
        return [(CENTRE, loop[i], loop[(i + 1) % n]) for i in range(n)]
    triangles: list[tuple[int, int, int]] = []
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        k = split[i][j]
        triangles.append((loop[i], loop[k], loop[j]))
        stack += [(i, k), (k, j)]
    return triangles


# For each cell edge, a bit mask of its cell faces on the low side of their axis (side 0). A diagonal between two
# edge points of such a face is forbidden; on the high-side faces it is allowed, so of the two cells sharing a
# face exactly one may join two of its edge points by a diagonal.
_EDGE_FACES = [sum(1 << f for f, (_, side, corners) in enumerate(FACES)
                   if side == 0 and start in corners and end in corners)
               for start, end in zip(EDGE_START.tolist(), EDGE_END.tolist())]


@functools.lru_cache(maxsize=1)
def triangle_table() -> tuple[np.ndarray, np.ndarray]:
    """(16384, max_triangles, 3) cell-edge indices (-1 padded) and (16384,) triangle counts.

    Index = corner bits (bit k set when corner k is inside) * 64 + face-decision bits.
    """
    cases: list[list[tuple[int, int, int]]] = []
    for config in range(256):
        # Face bits only matter on ambiguous faces: generate each distinct combination once.
        by_bits: dict[int, list[tuple[int, int, int]]] = {}
        ambiguous = 0
        for f, (_, _, corners) in enumerate(FACES):
            ins = [(config >> c) & 1 for c in corners]
            if ins[0] == ins[2] and ins[1] == ins[3] and ins[0] != ins[1]:
                ambiguous |= 1 << f
        for bits in range(64):
            key = bits & ambiguous
            if key not in by_bits:
                by_bits[key] = [t for loop in _loops(config, key) for t in _triangulate(loop)]
            cases.append(by_bits[key])
    max_triangles = max(len(c) for c in cases)
    table = np.full((TABLE_SIZE, max_triangles, 3), -1, dtype=np.int64)
    counts = np.zeros(TABLE_SIZE, dtype=np.int64)
    for index, triangles in enumerate(cases):
        counts[index] = len(triangles)
        if triangles:
            table[index, :len(triangles)] = triangles
    return table, counts


@dataclass
class _DeviceTables:
    triangles: torch.Tensor      # (TABLE_SIZE, max_triangles, 3) int64
    counts: torch.Tensor         # (TABLE_SIZE,) int64
    edge_start: torch.Tensor     # (12,) int64
    edge_end: torch.Tensor
    edge_axis: torch.Tensor
    corner_offsets: torch.Tensor  # (8, 3) int64
    face_corners: torch.Tensor   # (6, 4) int64


@functools.lru_cache(maxsize=8)
def _tables_on(device: torch.device) -> _DeviceTables:
    table, counts = triangle_table()
    as_tensor = functools.partial(torch.as_tensor, device=device)
    return _DeviceTables(as_tensor(table), as_tensor(counts), as_tensor(EDGE_START), as_tensor(EDGE_END),
                         as_tensor(EDGE_AXIS), as_tensor(CORNER_OFFSETS), as_tensor(FACE_CORNERS))


@dataclass
class MarchedSurface:
    """Triangles of a batch of grids, with vertices keyed by lattice edge so batches weld exactly."""
    vertex_keys: torch.Tensor     # (V,) int64 lattice-edge (or loop-centre) ids, sorted and unique
    vertex_points: torch.Tensor   # (V, 3) float32 positions in lattice units (point indices)
    faces: torch.Tensor           # (F, 3) int64 indices into vertex_keys, counter-clockwise seen from outside


# A vertex is kept at least this fraction of an edge away from its corners, so that a value of exactly zero at a
# lattice point does not put several distinct vertices at one position (zero-area triangles, duplicate points).
EDGE_T_MARGIN = 1e-3


def march_grids(grids: torch.Tensor, origins: torch.Tensor, lattice_points: tuple[int, int, int],
                cell_limit: tuple[int, int, int] | None = None) -> MarchedSurface:
    """Extract the zero set of a batch of value grids that are pieces of one lattice.

    ``grids`` (n, X+1, Y+1, Z+1) float32 holds the values at lattice points; ``origins`` (n, 3) int64 is the
    lattice index of each grid's first point. ``lattice_points`` (points per axis of the whole lattice) makes the
    vertex keys global. Cells whose lattice index reaches ``cell_limit`` on any axis are left out.
    """
    device = grids.device
    tables = _tables_on(device)
    n, sx, sy, sz = grids.shape
    cx, cy, cz = sx - 1, sy - 1, sz - 1
    inside = grids < 0
    config = torch.zeros((n, cx, cy, cz), dtype=torch.int16, device=device)
    for k, (dx, dy, dz) in enumerate(CORNER_OFFSETS.tolist()):
        config |= inside[:, dx:dx + cx, dy:dy + cy, dz:dz + cz].to(torch.int16) << k
    active = (config != 0) & (config != 255)
    if cell_limit is not None:
        for axis, cells in enumerate((cx, cy, cz)):
            in_range = origins[:, axis, None] + torch.arange(cells, device=device) < cell_limit[axis]   # (n, cells)
            shape = [n, 1, 1, 1]
            shape[axis + 1] = cells
            active &= in_range.view(shape)
    block, ix, iy, iz = active.nonzero(as_tuple=True)
    if block.numel() == 0:
        return _empty_surface(device)
    offsets = tables.corner_offsets
    corner_values = grids[block[:, None], ix[:, None] + offsets[:, 0], iy[:, None] + offsets[:, 1],
                          iz[:, None] + offsets[:, 2]]                                   # (m, 8)
    fc = tables.face_corners
    face_bits = (corner_values[:, fc[:, 0]] * corner_values[:, fc[:, 2]]
                 > corner_values[:, fc[:, 1]] * corner_values[:, fc[:, 3]]).long()      # (m, 6)
    case = config[block, ix, iy, iz].long() * 64 + (face_bits << torch.arange(6, device=device)).sum(1)
    counts = tables.counts[case]
    cell_of_triangle = torch.repeat_interleave(torch.arange(case.numel(), device=device), counts)
    first_triangle = torch.cumsum(counts, 0) - counts
    slot = torch.arange(cell_of_triangle.numel(), device=device) - first_triangle[cell_of_triangle]
    corner_edges = tables.triangles[case[cell_of_triangle], slot]                       # (T, 3), 12 = centre
    is_centre = corner_edges == CENTRE
    edge_of_corner = corner_edges.clamp(max=CENTRE - 1)
    cell_origin = origins[block] + torch.stack((ix, iy, iz), 1)                         # (m, 3) lattice index
    start_point = cell_origin[cell_of_triangle][:, None, :] + offsets[tables.edge_start[edge_of_corner]]
    px, py, pz = lattice_points

    def point_index(index: torch.Tensor) -> torch.Tensor:
        return (index[..., 0] * py + index[..., 1]) * pz + index[..., 2]
    # Edge vertices are keyed by lattice edge; a loop-centre vertex by its cell, after all edge keys.
    centre_keys = 3 * px * py * pz + point_index(cell_origin)[cell_of_triangle][:, None]
    keys = torch.where(is_centre, centre_keys, point_index(start_point) * 3 + tables.edge_axis[edge_of_corner])
    vertex_keys, faces = torch.unique(keys.reshape(-1), sorted=True, return_inverse=True)
    faces = faces.view(-1, 3)
    # Position each distinct edge vertex once, from any triangle corner that uses it (all give the same value).
    representative = torch.empty(vertex_keys.numel(), dtype=torch.int64, device=device)
    representative.scatter_(0, faces.reshape(-1), torch.arange(faces.numel(), device=device))
    cell = cell_of_triangle.repeat_interleave(3)[representative]
    edge = edge_of_corner.reshape(-1)[representative]
    v0 = corner_values[cell, tables.edge_start[edge]]
    v1 = corner_values[cell, tables.edge_end[edge]]
    t = (v0 / (v0 - v1)).clamp(EDGE_T_MARGIN, 1.0 - EDGE_T_MARGIN)
    points = start_point.reshape(-1, 3)[representative].to(torch.float32)
    points[torch.arange(points.shape[0], device=device), tables.edge_axis[edge]] += t
    centre_triangles = is_centre[:, 0].nonzero(as_tuple=True)[0]     # the centre is always a fan's first corner
    if centre_triangles.numel():
        centre = faces[centre_triangles, 0]
        ring_sum = torch.zeros_like(points).index_add_(0, centre, points[faces[centre_triangles, 1]])
        ring_count = torch.zeros(points.shape[0], device=device).index_add_(
            0, centre, torch.ones(centre.numel(), device=device))
        has_ring = ring_count > 0
        points[has_ring] = ring_sum[has_ring] / ring_count[has_ring, None]
    return MarchedSurface(vertex_keys, points, faces)


def _empty_surface(device: torch.device) -> MarchedSurface:
    return MarchedSurface(torch.zeros(0, dtype=torch.int64, device=device),
                          torch.zeros((0, 3), dtype=torch.float32, device=device),
                          torch.zeros((0, 3), dtype=torch.int64, device=device))


def marching_cubes(volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero set of one dense (X, Y, Z) volume: vertices (V, 3) float32 in index units and faces (F, 3) int64."""
    if volume.ndim != 3 or min(volume.shape) < 2:
        raise ValueError(f"marching_cubes: volume must be 3-D with at least 2 points per axis, "
                         f"got {tuple(volume.shape)}")
    surface = march_grids(volume[None].to(torch.float32), torch.zeros((1, 3), dtype=torch.int64, device=volume.device),
                          tuple(volume.shape))
    return surface.vertex_points, surface.faces
