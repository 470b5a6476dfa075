"""The README's main job, as CI runs it: scripts/run_example.py on the bundled chair on the CPU (the short ``ci``
preset), then its outputs opened and checked: the .blend holds the final textured object inside the sphere with
colours, the PNG shows something, the PLY and glTF files are the mesh."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bpy
import carrara
import numpy as np
from PIL import Image
from plyfile import PlyData

ROOT = Path(__file__).resolve().parents[2]


def test_the_main_job_delivers_the_blend_the_picture_and_the_meshes(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_example.py"), "--out", str(out),
                           "--preset", "ci", "--timeout", "900"], env=env, capture_output=True, text=True,
                          timeout=1200)
    said = [line for line in done.stdout.splitlines() if line.startswith("[carrara example]")]
    assert done.returncode == 0, "\n".join(said) + "\n" + done.stderr[-3000:]
    assert any("preview 1 in the scene" in line for line in said)

    for name in ("chair.blend", "chair.png", "chair.ply", "chair.glb"):
        assert (out / name).stat().st_size > 0, name
    picture = np.asarray(Image.open(out / "chair.png").convert("L"), dtype=np.float32)
    left, right = np.split(picture, 2, axis=1)          # the points, then the mesh, on the same background
    assert left.std() > 3.0 and right.std() > 3.0 and np.abs(left - right).mean() > 1.0

    carrara.register()          # the scene's Carrara properties exist while the add-on is registered
    try:
        bpy.ops.wm.open_mainfile(filepath=str(out / "chair.blend"))
        _check_the_scene(bpy.context.scene, out)
    finally:
        carrara.unregister()


def _check_the_scene(scene: bpy.types.Scene, out: Path) -> None:
    recon = scene.carrara.reconstruction
    run = scene.carrara.runs[-1]
    assert run.state == "finished" and run.final_object
    final = bpy.data.objects[run.final_object]
    assert "Col" in final.data.color_attributes and final.data.uv_layers
    assert any(node.type == "TEX_IMAGE" and node.image is not None for node in final.active_material.node_tree.nodes)

    vertex = PlyData.read(str(out / "chair.ply"))["vertex"]
    ply = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    assert len(ply) == len(final.data.vertices)
    centre, radius = np.array(recon.sphere_center), recon.sphere_radius
    assert np.linalg.norm(ply - centre, axis=1).max() <= radius * 1.001      # input coordinates, in the sphere
    local = np.empty(len(final.data.vertices) * 3, np.float32)
    final.data.vertices.foreach_get("co", local)
    assert np.allclose(local.reshape(-1, 3), ply, atol=1e-5)                 # in place under the root empty
    assert final.parent is not None and final.parent.name == recon.root_empty_name
