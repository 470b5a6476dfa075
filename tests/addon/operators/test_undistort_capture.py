"""Undistort for Training… under real bpy against a real backend: a COLMAP model with lens distortion (COLMAP's
default SIMPLE_RADIAL) is imported, Reconstruct says to press the button and the panel shows it; the button sends a
prepare job that only undistorts, the pump follows it, and the PINHOLE dataset beside the model is imported, ready
for Reconstruct."""
from __future__ import annotations

import json

import bpy
import pytest

from carrara.addon.client import pump
from carrara.addon.operators import prepare as ops_prepare
from carrara.addon.operators.reconstruct import readiness_problem
from carrara.addon.panels.capture import CARRARA_PT_reconstruction
from carrara.shared.dataset_source import UNDISTORT_FIRST
from sfm_inputs import CHAIR, distorted_chair
from testkit import ServerThread, draw_panel, free_tcp_port, start_backend, stop_process


def _recon():
    return bpy.context.scene.carrara.reconstruction


def test_undistort_for_training_runs_the_job_and_imports_a_model_ready_to_reconstruct(backend_preferences,
                                                                                        tmp_path):
    model = distorted_chair(tmp_path / "garden")
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(model)) == {"FINISHED"}
    assert not _recon().undistorted and _recon().camera_models == "SIMPLE_RADIAL"
    problem = readiness_problem(bpy.context.scene)
    assert problem.endswith(UNDISTORT_FIRST) and "Undistort for Training" in problem
    assert ("carrara.undistort_capture", {}) in draw_panel(CARRARA_PT_reconstruction).operators()
    panel_lines: list[str] = []
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        assert bpy.ops.carrara.undistort_capture() == {"FINISHED"}
        run = bpy.context.scene.carrara.runs[-1]
        dataset = tmp_path / "garden_undistorted"
        assert run.kind == "prepare" and run.dataset_path == str(dataset)

        def imported() -> bool:
            panel_lines.extend(t for t in draw_panel(CARRARA_PT_reconstruction).texts("progress") if t)
            return run.dataset_imported or bool(run.error)

        assert pump.process_pending(60, until=imported), (run.state, run.error, run.last_log)
        assert run.state == "finished" and run.error == "", run.error
        job_dir = server.server.workspace.job_dir(run.job_id)
        config = json.loads((job_dir / "job.json").read_text())["config"]
    assert config["dataset"]["path"] == str(model / "sparse" / "0") and config["output_path"] == str(dataset)
    assert any(line.startswith("Preparing: undistortion ") for line in panel_lines), panel_lines
    report = json.loads((dataset / "prepare_report.json").read_text())
    assert report["source"] == "model" and report["camera_models_after"] == ["PINHOLE"]
    recon = _recon()
    assert recon.model_path == str(dataset / "sparse" / "0") and recon.images_dir == str(dataset / "images")
    assert recon.undistorted and recon.camera_models == "PINHOLE" and recon.image_count == 60
    assert readiness_problem(bpy.context.scene) is None
    texts = draw_panel(CARRARA_PT_reconstruction)
    assert ("carrara.undistort_capture", {}) not in texts.operators()
    assert not [t for t in texts.texts("progress") if t]


def test_the_button_is_offered_only_for_a_distorted_colmap_model(registered_addon, tmp_path):
    assert not bpy.ops.carrara.undistort_capture.poll()                    # nothing imported
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(CHAIR)) == {"FINISHED"}
    assert not bpy.ops.carrara.undistort_capture.poll()                    # PINHOLE already
    assert ("carrara.undistort_capture", {}) not in draw_panel(CARRARA_PT_reconstruction).operators()
    with pytest.raises(ValueError, match="Import a COLMAP model first"):
        bpy.context.scene.carrara.reconstruction.source_format = "TRANSFORMS"
        ops_prepare.start_undistort(bpy.context)
    assert len(bpy.context.scene.carrara.runs) == 0


def test_the_default_dataset_folder_is_beside_the_models_workspace(tmp_path):
    for model in (tmp_path / "garden", tmp_path / "garden" / "sparse", tmp_path / "garden" / "sparse" / "0"):
        assert ops_prepare.undistorted_folder(model) == tmp_path / "garden_undistorted"


def test_a_backend_that_cannot_see_the_model_is_sent_it_and_the_undistorted_dataset_comes_back(backend_preferences,
                                                                                             tmp_path):
    model = distorted_chair(tmp_path / "garden")
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(model)) == {"FINISHED"}
    port = free_tcp_port()
    backend = start_backend(tmp_path / "workspace", port, "--uploads-only")
    try:
        backend_preferences.backend_address = f"tcp://127.0.0.1:{port}"
        assert bpy.ops.carrara.undistort_capture() == {"FINISHED"}
        run = bpy.context.scene.carrara.runs[-1]
        assert pump.process_pending(90, until=lambda: run.dataset_imported or bool(run.error)), \
            (run.state, run.phase, run.error)
        assert run.state == "finished" and run.error == "", run.error
        config = json.loads((tmp_path / "workspace" / "jobs" / run.job_id / "job.json").read_text())["config"]
    finally:
        stop_process(backend)
    assert config["dataset"]["upload_id"] and config.get("output_path") is None     # sent, then fetched back
    dataset = tmp_path / "garden_undistorted"
    assert json.loads((dataset / "prepare_report.json").read_text())["camera_models_before"] == ["SIMPLE_RADIAL"]
    assert _recon().images_dir == str(dataset / "images") and _recon().camera_models == "PINHOLE"
    assert readiness_problem(bpy.context.scene) is None
