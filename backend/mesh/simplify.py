"""Decimation to a face budget (quadric edge collapse by fast-simplification), for assets Blender can handle.

A resolution-2048 extraction has tens of millions of faces (Neuralangelo users report 35 M); an artist wants a
budget. Colours are not carried through the collapse: the pipeline evaluates the colour field at the decimated
vertices afterwards, which is exact where a transfer would blur.

Meshes of more than LARGE_MESH_FACES faces are decimated with aggressiveness 9 instead of the library's 7: its
collapse threshold grows faster per pass, so fewer passes reach the budget. Measured here (one core, a 21 M-face
resolution-2048 extraction of spheres, a torus and a ripple, down to 500 k faces): 63 s at 7, 30 s at 9, 27 s at
10, with the same distance of face centroids to the true surface (max 3.2e-4, mean 1.9e-5, 99th percentile 9.4e-5
of the unit sphere) at all three. Small meshes keep 7: they take under a second, and at 160x reductions (80 k faces
to 500) 9 left vertices 25 % farther from the surface.
"""
from __future__ import annotations

import numpy as np

LARGE_MESH_FACES = 2_000_000
DEFAULT_AGGRESSIVENESS = 7
LARGE_MESH_AGGRESSIVENESS = 9


def decimate(vertices: np.ndarray, faces: np.ndarray, face_budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V', 3) float32 and faces (F', 3) int64 with F' <= ``face_budget``; unchanged if already within it."""
    if not isinstance(face_budget, (int, np.integer)) or face_budget < 4:
        raise ValueError(f"decimate_faces must be an integer of at least 4 faces, got {face_budget!r}")
    if len(faces) <= face_budget:
        return vertices, faces
    import fast_simplification   # imported here: the extraction path does not need it (nor the GPU machine)

    points, new_faces = fast_simplification.simplify(np.asarray(vertices, np.float64), np.asarray(faces, np.int64),
                                                     target_count=int(face_budget),
                                                     agg=LARGE_MESH_AGGRESSIVENESS if len(faces) > LARGE_MESH_FACES
                                                     else DEFAULT_AGGRESSIVENESS)
    new_faces = np.asarray(new_faces, np.int64)
    if len(new_faces) > face_budget:
        raise RuntimeError(f"decimation left {len(new_faces)} faces, more than the budget of {face_budget}")
    used = np.zeros(len(points), dtype=bool)
    used[new_faces.reshape(-1)] = True
    new_index = np.cumsum(used) - 1
    return points[used].astype(np.float32), new_index[new_faces]
