"""A UV atlas for a mesh (xatlas), computed in a child process (``child_process.py``: xatlas holds Python's lock
for the whole call, 5 s for a 500 k-face asset, which silenced the backend). An atlas that fails, crashes or
runs out of time raises ``AtlasError``; the caller then delivers the mesh without a texture.

**In pieces.** xatlas's chart computation grows much faster than linearly with mesh size (here a 200 k-face
sphere took 14 minutes as one mesh and 1.5 s of CPU as 2 k-face pieces), so the mesh is cut into spatially
compact pieces by median splits and each piece is charted separately; xatlas packs all charts into one atlas.
Piece borders become chart seams, which the texture's dilation hides. Measured on a 500 k-face asset here (2 cores,
one core in brackets): pieces of 2,048 faces 13.0 s (25.3 s), of 1,024 7.9 s, of 512 5.4 s (9.4 s), so the
charting, which xatlas spreads over the cores, dominates; smaller pieces make more charts (2,276 / 2,476 /
3,021) and so more padding, 1,024 is the compromise. Packing charts on 4x4-texel blocks (``blockAlign``) cut
the time by a third at the same utilisation (0.75).
"""
from __future__ import annotations

import numpy as np

from .child_process import ChildFailed, run_in_child, serve

PIECE_FACES = 1024
PADDING = 2   # texels between charts
TIMEOUT_BASE_S = 30.0
TIMEOUT_PER_MILLION_FACES_S = 120.0   # 500 k faces take about 8 s on 2 cores here, 5.4 s on 16


class AtlasError(RuntimeError):
    """The atlas could not be made (xatlas failed, crashed or ran out of time): no texture for this mesh."""


def uv_atlas(vertices: np.ndarray, faces: np.ndarray, texture_size: int, timeout_s: float | None = None) -> np.ndarray:
    """Per-corner UVs (F * 3, 2) float32 in Blender's convention, packed for a ``texture_size`` square texture."""
    if len(faces) == 0:
        raise ValueError("uv_atlas: the mesh has no faces")
    timeout = timeout_s if timeout_s is not None else TIMEOUT_BASE_S + TIMEOUT_PER_MILLION_FACES_S * len(faces) / 1e6
    try:
        reply = run_in_child(__name__, {"vertices": np.ascontiguousarray(vertices, np.float32),
                                         "faces": np.asarray(faces, np.int64),
                                         "texture_size": np.int64(texture_size)}, timeout, "xatlas")
    except ChildFailed as exc:
        raise AtlasError(f"{exc} for {len(faces):,} faces") from None
    return reply["uv"]


def _pieces(centroids: np.ndarray, max_faces: int) -> list[np.ndarray]:
    """Face indices cut into pieces of at most ``max_faces`` by median splits along the widest axis."""
    pieces, stack = [], [np.arange(len(centroids))]
    while stack:
        index = stack.pop()
        if len(index) <= max_faces:
            pieces.append(index)
            continue
        c = centroids[index]
        axis = int(np.argmax(c.max(0) - c.min(0)))
        order = np.argsort(c[:, axis], kind="stable")
        half = len(index) // 2
        stack += [index[order[:half]], index[order[half:]]]
    return pieces


def chart(vertices: np.ndarray, faces: np.ndarray, texture_size: int) -> np.ndarray:
    """``uv_atlas``'s work, in this process: what the child runs."""
    import xatlas
    vertices = np.ascontiguousarray(vertices, np.float32)
    faces = np.asarray(faces, np.int64)
    atlas = xatlas.Atlas()
    pieces = _pieces(vertices[faces].mean(1), PIECE_FACES)
    piece_faces = []
    for index in pieces:
        used, local = np.unique(faces[index], return_inverse=True)
        piece_faces.append(local.reshape(-1, 3))
        atlas.add_mesh(vertices[used], piece_faces[-1].astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)   # with texels_per_unit left at 0: one atlas of about this size
    pack.padding = PADDING
    pack.bilinear = True
    pack.blockAlign = True
    atlas.generate(xatlas.ChartOptions(), pack)
    if atlas.atlas_count != 1:
        raise RuntimeError(f"xatlas made {atlas.atlas_count} atlas pages where one was asked for")
    uv = np.empty((len(faces), 3, 2), dtype=np.float32)
    for mesh_index, (index, local) in enumerate(zip(pieces, piece_faces)):
        mapping, corners, piece_uv = atlas.get_mesh(mesh_index)
        if corners.shape != local.shape or not np.array_equal(mapping[corners], local):
            raise RuntimeError("xatlas returned faces in another order than it was given; cannot map its UVs")
        uv[index] = piece_uv[corners]
    _give_uncharted_faces_neighbouring_uvs(faces, uv, len(vertices))
    uv[..., 1] = 1.0 - uv[..., 1]    # xatlas's v runs down the image, Blender's up
    return uv.reshape(-1, 2)


def _give_uncharted_faces_neighbouring_uvs(faces: np.ndarray, uv: np.ndarray, vertex_count: int) -> None:
    """Place the slivers xatlas leaves out of every chart (near-zero area, all corners at UV (0, 0)) on the UV
    of one of their vertices in a charted face: they then read the colour of where they are, and, being points
    in UV space, cover no texels of the charts around them."""
    uncharted = (uv == uv[:, :1]).all(axis=(1, 2))
    if not uncharted.any():
        return
    vertex_uv = np.zeros((vertex_count, 2), dtype=np.float32)
    known = np.zeros(vertex_count, dtype=bool)
    vertex_uv[faces[~uncharted].reshape(-1)] = uv[~uncharted].reshape(-1, 2)
    known[faces[~uncharted].reshape(-1)] = True
    corners = faces[uncharted]
    first_known = corners[np.arange(len(corners)), np.argmax(known[corners], axis=1)]
    uv[uncharted] = vertex_uv[first_known][:, None, :]


if __name__ == "__main__":
    serve(lambda a: {"uv": chart(a["vertices"], a["faces"], int(a["texture_size"]))})
