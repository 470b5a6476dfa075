"""Quadric edge collapse by fast-simplification, run as a child process (``child_process.py``): the library holds
Python's lock for seconds on the meshes of a final asset. ``simplify.decimate`` is the caller; this module is
only the child's side and imports nothing but numpy and the library."""
from __future__ import annotations

import numpy as np

from .child_process import Arrays, serve


def collapse(arrays: Arrays) -> Arrays:
    import fast_simplification

    points, faces = fast_simplification.simplify(np.asarray(arrays["vertices"], np.float64),
                                                 np.asarray(arrays["faces"], np.int64),
                                                 target_count=int(arrays["target"]), agg=int(arrays["agg"]))
    return {"vertices": np.asarray(points), "faces": np.asarray(faces, np.int64)}


if __name__ == "__main__":
    serve(collapse)
