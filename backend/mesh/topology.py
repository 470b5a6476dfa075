"""Facts about a triangle mesh's topology that an asset's users rely on: closed, manifold, consistently oriented.

Used by the tests and the extraction benchmark to state that what we ship is watertight, not only that it looks
right; numpy, so it also checks meshes read back from files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TopologyReport:
    faces: int
    boundary_edges: int          # edges used by one face
    overused_edges: int          # edges used by three faces or more
    misoriented_edges: int       # edges whose two faces run the same way along them
    nonmanifold_vertices: int    # vertices whose faces form more than one fan
    signed_volume: float

    @property
    def closed_oriented_manifold(self) -> bool:
        return self.boundary_edges == self.overused_edges == self.misoriented_edges == self.nonmanifold_vertices == 0


def topology_report(vertices: np.ndarray, faces: np.ndarray) -> TopologyReport:
    """Count every defect that keeps a mesh from being a closed, oriented 2-manifold, and its signed volume."""
    faces = np.asarray(faces, dtype=np.int64)
    vertices = np.asarray(vertices, dtype=np.float64)
    n = max(int(faces.max()) + 1 if faces.size else 0, len(vertices))
    start = faces.reshape(-1)
    end = np.roll(faces, -1, axis=1).reshape(-1)
    directed = start * n + end
    undirected = np.minimum(start, end) * n + np.maximum(start, end)
    _, uses = np.unique(undirected, return_counts=True)
    _, directed_uses = np.unique(directed, return_counts=True)
    corners = vertices[faces]
    volume = float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6.0)
    return TopologyReport(faces=len(faces), boundary_edges=int((uses == 1).sum()), overused_edges=int((uses > 2).sum()),
                          misoriented_edges=int((directed_uses > 1).sum()),
                          nonmanifold_vertices=_nonmanifold_vertices(faces, n), signed_volume=volume)


def _nonmanifold_vertices(faces: np.ndarray, n: int) -> int:
    """Vertices away from the boundary whose incident faces do not form a single closed fan."""
    if faces.size == 0:
        return 0
    f = len(faces)
    # Corner (face i, slot k) at vertex v; around v the next corner is in the face holding the edge v -> prev(v).
    vertex = faces.reshape(-1)
    prev = np.roll(faces, 1, axis=1).reshape(-1)
    following = faces[:, [1, 2, 0]].reshape(-1)
    key_out = vertex * n + following          # this corner's face holds directed edge vertex -> following
    order = np.argsort(key_out)
    sorted_keys = key_out[order]
    wanted = vertex * n + prev               # the neighbouring face holds vertex -> prev
    pos = np.searchsorted(sorted_keys, wanted)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    found = sorted_keys[pos] == wanted
    successor = np.where(found, order[pos], np.arange(3 * f))
    # Label each corner by the smallest corner of its cycle (pointer doubling), then count cycles per vertex.
    label = np.minimum(np.arange(3 * f), successor)
    step = successor.copy()
    for _ in range(int(np.ceil(np.log2(3 * f + 1))) + 1):
        label = np.minimum(label, label[step])
        step = step[step]
    cycles_per_vertex = np.bincount(vertex[label == np.arange(3 * f)], minlength=n)
    on_boundary = np.zeros(n, dtype=bool)
    on_boundary[vertex[~found]] = True
    return int(((cycles_per_vertex > 1) & ~on_boundary).sum())
