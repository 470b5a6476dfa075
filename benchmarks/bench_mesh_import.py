"""Putting the backend's meshes into Blender (issue 5): a 5 M-face final asset, and the longest main-thread step
while previews stream. Runs here, on the CPU, with the real bpy module.

    .venv/bin/python benchmarks/bench_mesh_import.py [--faces 5000000] [--preview-faces 66000]

What the pump does on Blender's main thread when a download completes is timed in two parts: reading the verified
``.npz`` artifact (``MeshData.read``) and building the object in place (``scene_mesh.place_job_mesh``: vertices,
faces, vertex colours, per-corner UVs, material with the packed texture). Baseline in the same run: Blender's own
PLY importer (``bpy.ops.wm.ply_import``) on the same mesh with vertex colours, written by the backend's PLY writer.
The preview figure is the same two steps for a mesh of the size the H200 run streamed (66 k faces at resolution
128), repeated as when previews replace each other in place: the longest is the longest pump tick they cause.
Results: benchmarks/results/mesh_import.json.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import _bootstrap

CONTEXT = _bootstrap.run_context()

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from carrara.addon.scene import mesh as scene_mesh  # noqa: E402
from carrara.backend.mesh.export import write_ply  # noqa: E402
from carrara.shared.mesh_data import MeshData  # noqa: E402

GOAL_IMPORT_S = 3.0


def torus_mesh(faces: int, texture_size: int = 1024) -> MeshData:
    """A closed torus of about ``faces`` triangles with vertex colours, per-corner UVs and a PNG: an asset's shape."""
    import io

    from PIL import Image

    ring = max(8, int(math.sqrt(faces / 2 / 4)))
    tube = max(8, faces // (2 * ring))
    u, v = np.meshgrid(np.arange(ring) * 2 * np.pi / ring, np.arange(tube) * 2 * np.pi / tube, indexing="ij")
    x, y, z = (0.6 + 0.2 * np.cos(v)) * np.cos(u), (0.6 + 0.2 * np.cos(v)) * np.sin(u), 0.2 * np.sin(v)
    vertices = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float32)
    i, j = np.meshgrid(np.arange(ring), np.arange(tube), indexing="ij")
    a, b = i * tube + j, ((i + 1) % ring) * tube + j
    c, d = ((i + 1) % ring) * tube + (j + 1) % tube, i * tube + (j + 1) % tube
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    colors = np.concatenate([((vertices * 0.5 + 0.5) * 255).astype(np.uint8),
                             np.full((len(vertices), 1), 255, np.uint8)], axis=1)
    uv = np.random.default_rng(0).random((len(tris) * 3, 2), dtype=np.float32)
    png = io.BytesIO()
    Image.fromarray(np.full((texture_size, texture_size, 3), 128, np.uint8)).save(png, format="PNG")
    return MeshData(vertices, tris.astype(np.int32), colors, uv, png.getvalue())


def time_pump_import(path: Path, job_id: str, role: str) -> tuple[float, float]:
    """Seconds to read the artifact and to place it, as ``mesh_delivery.step_mesh_downloads`` then ``on_mesh_ready`` do."""
    start = time.perf_counter()
    mesh = MeshData.read(path)
    read = time.perf_counter() - start
    start = time.perf_counter()
    scene_mesh.place_job_mesh(job_id, role, f"bench {role}", mesh, parent_name=None, collection_name=None,
                              with_material=True)
    return read, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=5_000_000)
    parser.add_argument("--preview-faces", type=int, default=66_000)
    parser.add_argument("--previews", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="carrara-mesh-import-"))
    bpy.ops.wm.read_factory_settings(use_empty=True)

    final = torus_mesh(args.faces)
    final.write(work / "final.npz")
    write_ply(final, work / "final.ply")
    read_s, place_s = time_pump_import(work / "final.npz", "bench", "final")
    start = time.perf_counter()
    bpy.ops.wm.ply_import(filepath=str(work / "final.ply"))
    ply_s = time.perf_counter() - start

    preview = torus_mesh(args.preview_faces, texture_size=8)
    preview.texture_png = None          # previews carry vertex colours only
    preview.uv = None
    preview.write(work / "preview.npz")
    ticks = [sum(time_pump_import(work / "preview.npz", "bench", "preview")) for _ in range(args.previews)]

    total = read_s + place_s
    payload = {**CONTEXT, "benchmark": "mesh_import",
               "final": {"faces": final.face_count, "vertices": final.vertex_count, "artifact_bytes":
                         (work / "final.npz").stat().st_size, "read_s": read_s, "place_s": place_s,
                         "total_s": total, "goal_s": GOAL_IMPORT_S, "total_over_goal": total / GOAL_IMPORT_S,
                         "baseline_blender_ply_import_s": ply_s, "total_over_ply_import": total / ply_s},
               "previews": {"faces": preview.face_count, "count": args.previews, "longest_tick_s": max(ticks),
                            "median_tick_s": float(np.median(ticks))},
               "blender": bpy.app.version_string}
    print(f"final {final.face_count:,} faces: read {read_s:.2f} s + place {place_s:.2f} s = {total:.2f} s "
          f"(goal {GOAL_IMPORT_S} s); Blender's PLY import {ply_s:.2f} s")
    print(f"previews of {preview.face_count:,} faces: longest tick {max(ticks) * 1000:.0f} ms")
    for path in _bootstrap.write_results("mesh_import", payload):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
