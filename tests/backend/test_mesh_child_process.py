"""xatlas and fast-simplification run in child processes: the backend's main thread, which answers the clients'
heartbeats, keeps running while they work, and their failures come back as named errors."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from carrara.backend.mesh.atlas import uv_atlas
from carrara.backend.mesh.simplify import DecimationError, decimate


def lat_long_sphere(rings: int) -> tuple[np.ndarray, np.ndarray]:
    """A unit sphere of rings x 2 rings quads (open at the poles), built directly: a big mesh in milliseconds."""
    theta, phi = np.meshgrid(np.linspace(0.01, np.pi - 0.01, rings), np.linspace(0, 2 * np.pi, 2 * rings,
                                                                                  endpoint=False), indexing="ij")
    vertices = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    row, column = np.arange(rings - 1)[:, None] * 2 * rings, np.arange(2 * rings)[None, :]
    a, b = (row + column).ravel(), (row + (column + 1) % (2 * rings)).ravel()
    c, d = a + 2 * rings, b + 2 * rings
    return vertices.reshape(-1, 3).astype(np.float32), np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def _longest_pause_while(work) -> float:
    """The longest the calling thread waited for Python's lock while ``work`` ran in another thread."""
    done = threading.Event()
    worker = threading.Thread(target=lambda: (work(), done.set()))
    worker.start()
    longest, last = 0.0, time.monotonic()
    while not done.is_set():
        time.sleep(0.01)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    worker.join()
    return longest


def test_the_main_thread_keeps_running_while_the_native_tools_work():
    """In-process, these two calls held the lock for 1.6 s and 5.1 s here (the heartbeat gives up after 3.5 s)."""
    vertices, faces = lat_long_sphere(500)                  # 1 M faces
    results = {}
    pause = _longest_pause_while(lambda: results.update(decimated=decimate(vertices, faces, 50_000)))
    assert pause < 0.5 and len(results["decimated"][1]) <= 50_000
    pause = _longest_pause_while(lambda: results.update(uv=uv_atlas(vertices, faces[:100_000], 512)))
    assert pause < 0.5 and results["uv"].shape == (300_000, 2)


def test_a_failing_tool_is_a_named_error():
    vertices, faces = lat_long_sphere(40)
    with pytest.raises(DecimationError, match=r"decimation of 6,240 faces to 1,000: fast-simplification failed"):
        decimate(vertices, np.concatenate([faces, faces[:, :1]], 1), 1000)   # quads, not triangles
