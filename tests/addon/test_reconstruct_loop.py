"""The artist's loop under real bpy against a real backend subprocess on loopback, training on the CPU: import the
engine test scene, press Reconstruct, watch previews replace each other in place, get the final textured asset;
the photos uploaded to a backend that cannot read the artist's folders; the backend killed mid-run and the run
carried on from its checkpoint once a backend is back."""
from __future__ import annotations

import os
import signal

import bpy
import numpy as np
import pytest

from carrara.addon.client import pump
from carrara.addon.client.keep_alive import connect
from engine_scenes import SceneTruth, cached_scene
from testkit import free_tcp_port, start_backend, stop_process

ITERATIONS = 120


@pytest.fixture(scope="module")
def scene_truth(tmp_path_factory) -> SceneTruth:
    return cached_scene(tmp_path_factory)


def _status():
    return bpy.context.window_manager.carrara_backend


def _run():
    return bpy.context.scene.carrara.runs[-1]


def _wait(condition, timeout_s: float, what: str) -> None:
    assert pump.process_pending(timeout_s, until=condition), \
        f"timed out waiting for {what}: connection {_status().state} ({_status().problem}); runs " \
        f"{[(r.name, r.job_id, r.state, r.iteration, r.reason, r.error) for r in bpy.context.scene.carrara.runs]}"


def _import_and_set_up(truth: SceneTruth, **settings) -> None:
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(truth.folder)) == {'FINISHED'}
    recon = bpy.context.scene.carrara.reconstruction
    recon.sphere_center, recon.sphere_radius = truth.sphere_center.tolist(), truth.sphere_radius
    values = {"preset": "ci", "iterations": ITERATIONS, "device": "cpu", "preview_every_s": 0.5,
              "preview_resolution": 32, "mesh_resolution": 48, "texture_size": 64, "decimate_faces": 0}
    values.update(settings)
    for name, value in values.items():
        setattr(bpy.context.scene.carrara.settings, name, value)


def _connect(backend_preferences, port: int) -> None:
    backend_preferences.backend_address = f"tcp://127.0.0.1:{port}"
    connect()
    _wait(lambda: _status().state == "connected", 60, "the welcome")


def _world_vertices(obj: bpy.types.Object) -> np.ndarray:
    local = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", local)
    matrix = np.array(obj.matrix_world)
    return local.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def test_reconstruct_uploads_streams_previews_in_place_and_imports_the_asset(backend_preferences, scene_truth,
                                                                             tmp_path):
    port = free_tcp_port()
    backend = start_backend(tmp_path / "workspace", port, "--uploads-only")
    try:
        _connect(backend_preferences, port)
        _import_and_set_up(scene_truth)
        recon = bpy.context.scene.carrara.reconstruction
        root = bpy.data.objects[recon.root_empty_name]
        assert bpy.ops.carrara.reconstruct() == {'FINISHED'}
        _wait(lambda: _run().job_id != "", 120, "the upload, then the job")     # the backend asked for the photos
        run = _run()
        assert run.kind == "reconstruct" and run.error == ""

        _wait(lambda: run.preview_object != "", 120, "the first preview")
        preview = bpy.data.objects[run.preview_object]
        first_data = preview.data.name
        first_artifact = run.preview_artifact
        _wait(lambda: run.preview_artifact != first_artifact or run.final_object != "", 120, "a second preview")
        if run.preview_artifact != first_artifact:      # the same object, given new mesh data in place
            assert bpy.data.objects[run.preview_object] == preview and preview.data.name != first_data
            assert first_data not in bpy.data.meshes
        assert preview.parent == root and preview.name in bpy.data.collections[recon.collection_name].objects

        _wait(lambda: run.final_object != "" and run.state == "finished", 300, "the final mesh")
        assert run.iteration == ITERATIONS
        final = bpy.data.objects[run.final_object]
        assert final.parent == root and preview.hide_render
        bpy.context.view_layer.update()             # matrix_world of a freshly parented object
        world = _world_vertices(final)
        # The root carries COLMAP -> Blender: undo it to compare with the truth in the model's coordinates.
        to_model = np.linalg.inv(np.array(root.matrix_world))
        model = world @ to_model[:3, :3].T + to_model[:3, 3]
        assert np.linalg.norm(model - scene_truth.sphere_center, axis=1).max() <= scene_truth.sphere_radius * 1.001
        assert "Col" in final.data.color_attributes and final.data.uv_layers
        nodes = final.active_material.node_tree.nodes
        texture = next(node for node in nodes if node.type == "TEX_IMAGE")
        assert texture.image.packed_file is not None and tuple(texture.image.size) == (64, 64)
    finally:
        stop_process(backend)


def test_a_backend_killed_mid_run_comes_back_and_the_run_finishes_from_its_checkpoint(backend_preferences,
                                                                                      scene_truth, tmp_path):
    port = free_tcp_port()
    workspace = tmp_path / "workspace"
    backend = start_backend(workspace, port)
    try:
        _connect(backend_preferences, port)
        _import_and_set_up(scene_truth, iterations=400, preview_every_s=0.0)
        assert bpy.ops.carrara.reconstruct() == {'FINISHED'}
        _wait(lambda: _run().job_id != "" and _run().iteration >= 220, 240, "progress past the first checkpoint")
        run = _run()
        job_id = run.job_id
        os.kill(backend.pid, signal.SIGKILL)
        backend.wait(10)
        _wait(lambda: _status().state == "lost", 15, "the loss to be noticed")

        backend = start_backend(workspace, port)
        _wait(lambda: _status().state == "connected", 60, "the reconnect")
        _wait(lambda: run.final_object != "" and run.state == "finished", 300, "the resumed run's final mesh")
        assert run.job_id == job_id and run.iteration == 400
        log = (workspace / "jobs" / job_id / "log.txt").read_text()
        assert "resumed from ckpt_00000200.pt at iteration 200" in log
        assert bpy.data.objects[run.final_object].data.polygons
    finally:
        stop_process(backend)
