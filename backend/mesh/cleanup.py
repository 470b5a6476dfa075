"""Mesh clean-up on the device: dropping unused vertices and degenerate faces, floaters, vertex normals.

Connected components use a parallel union-find (hook every edge's larger root onto the smaller, then pointer
jumping until every vertex points at its root), so a 30 M-face mesh is labelled in a few dozen tensor passes on
the GPU instead of a Python graph walk; the same code runs on the CPU for tests.
"""
from __future__ import annotations

import torch


def compact_vertices(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop vertices no face uses and renumber the faces; the order of the kept vertices is unchanged."""
    used = torch.zeros(vertices.shape[0], dtype=torch.bool, device=vertices.device)
    used[faces.reshape(-1)] = True
    new_index = torch.cumsum(used, 0) - 1
    return vertices[used], new_index[faces]


def remove_degenerate_faces(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop faces that repeat a vertex or touch a non-finite vertex, then unused vertices.

    Faces of zero area with three distinct vertices are kept: removing them would open a hole in a closed mesh.
    """
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    finite = torch.isfinite(vertices).all(1)
    keep = ~repeated & finite[faces].all(1)
    return compact_vertices(vertices, faces[keep])


def connected_components(faces: torch.Tensor, vertex_count: int) -> torch.Tensor:
    """Component label (V,) int64 of every vertex: the smallest vertex index of its component."""
    device = faces.device
    parent = torch.arange(vertex_count, device=device)
    a = faces.reshape(-1)
    b = faces.roll(-1, dims=1).reshape(-1)
    while True:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not bool(differ.any()):
            return parent
        low = torch.minimum(root_a[differ], root_b[differ])
        high = torch.maximum(root_a[differ], root_b[differ])
        parent.scatter_reduce_(0, high, low, reduce="amin")   # roots only ever point to smaller indices
        while True:
            grand = parent[parent]
            if torch.equal(grand, parent):
                break
            parent = grand


def remove_small_components(vertices: torch.Tensor, faces: torch.Tensor,
                            min_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the pieces with at least ``min_fraction`` of the largest piece's faces (floaters go).

    ``min_fraction`` = 1 keeps only the largest piece (ties keep all equally large ones); 0 keeps everything.
    Counting faces over the whole mesh, not per block, is what Neuralangelo's per-block filter gets wrong.
    """
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must lie in [0, 1], got {min_fraction}")
    if faces.shape[0] == 0:
        return vertices, faces
    labels = connected_components(faces, vertices.shape[0])
    face_label = labels[faces[:, 0]]
    face_count = torch.bincount(face_label, minlength=vertices.shape[0])
    keep_component = face_count >= min_fraction * face_count.max()
    return compact_vertices(vertices, faces[keep_component[face_label]])


def remove_cavities(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop closed pieces that enclose negative volume: the walls of bubbles inside a solid.

    Marching cubes orients faces towards positive SDF, so an object's outer surface encloses positive volume and a
    bubble of positive SDF inside it (which hash collisions at the fine levels leave where no ray ever looks) is a
    closed piece of negative volume. Nobody can see those from outside, but they lie far from the true surface and
    Blender shows them in section and to modifiers. Only for object scenes: a room's walls (indoor scenes) are
    such a piece too. Open pieces (cut by the sphere) are kept, their volume means nothing.
    """
    if faces.shape[0] == 0:
        return vertices, faces
    labels = connected_components(faces, vertices.shape[0])
    face_label = labels[faces[:, 0]]
    corners = vertices[faces].double()
    signed = (corners[:, 0] * torch.linalg.cross(corners[:, 1], corners[:, 2])).sum(1) / 6
    volume = torch.zeros(vertices.shape[0], dtype=torch.float64, device=vertices.device)
    volume.index_add_(0, face_label, signed)
    edges = torch.cat((faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]])).sort(1).values
    _, edge_of, uses = torch.unique(edges[:, 0] * vertices.shape[0] + edges[:, 1], return_inverse=True,
                                    return_counts=True)
    open_piece = torch.zeros(vertices.shape[0], dtype=torch.bool, device=vertices.device)
    open_piece[face_label.repeat(3)[uses[edge_of] == 1]] = True
    cavity = (volume < 0) & ~open_piece
    return compact_vertices(vertices, faces[~cavity[face_label]])


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals (V, 3), the area-weighted mean of the adjacent faces' normals (+z where undefined)."""
    corners = vertices[faces]
    face_normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # 2 * area
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals.index_add_(0, faces[:, k], face_normal)
    length = normals.norm(dim=1, keepdim=True)
    normals = torch.where(length > 0, normals / length.clamp_min(1e-30), torch.zeros_like(normals))
    normals[length.squeeze(1) == 0, 2] = 1.0
    return normals
