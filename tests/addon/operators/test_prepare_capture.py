"""New from photos or video… under real bpy: the operator sends a prepare job to a real backend, the pump follows
its stages into the panel without Blender ever waiting, and the finished dataset is imported through the COLMAP
importer (points, cameras with photos, sphere), ready for Reconstruct."""
from __future__ import annotations

import json

import bpy
import pytest

from carrara.addon.client import pump
from carrara.addon.operators import prepare as ops_prepare
from carrara.addon.operators.reconstruct import readiness_problem
from carrara.addon.panels.capture import CARRARA_PT_reconstruction
from carrara.addon.scene.prepared_dataset import import_finished_prepares
from sfm_inputs import chair_photos, prepared_chair
from testkit import ServerThread, draw_panel


def _recon():
    return bpy.context.scene.carrara.reconstruction


def test_a_finished_prepare_run_is_imported_once_like_a_colmap_model_and_is_ready_to_reconstruct(
        registered_addon, tmp_path_factory):
    dataset, _ = prepared_chair(tmp_path_factory)
    registered = json.loads((dataset / "prepare_report.json").read_text())["registered"]
    run = bpy.context.scene.carrara.runs.add()
    run.kind, run.state, run.job_id, run.dataset_path = "prepare", "running", "job-1", str(dataset)
    assert import_finished_prepares() == [] and not _recon().has_capture     # not finished yet
    run.state = "finished"
    assert import_finished_prepares() == [str(dataset)]
    recon = _recon()
    assert recon.has_capture and recon.image_count == registered and recon.point_count > 100
    assert recon.undistorted and recon.camera_models == "PINHOLE" and recon.images_dir == str(dataset / "images")
    assert recon.sphere_radius > 0 and readiness_problem(bpy.context.scene) is None
    cameras = [obj for obj in bpy.data.objects if obj.type == "CAMERA"]
    assert len(cameras) == registered
    assert import_finished_prepares() == [] and run.dataset_imported      # once only
    assert len([obj for obj in bpy.data.objects if obj.type == "CAMERA"]) == registered


def test_new_from_photos_runs_the_job_shows_its_stages_and_imports_the_result(backend_preferences, tmp_path):
    photos = chair_photos(tmp_path / "garden", 8)
    panel_lines: list[str] = []
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        assert bpy.ops.carrara.new_from_capture(filepath=str(photos / "r_95.png"), max_side=400) == {"FINISHED"}
        run = bpy.context.scene.carrara.runs[-1]
        assert run.kind == "prepare" and run.dataset_path == str(tmp_path / "garden_carrara")

        def imported() -> bool:
            panel_lines.extend(t for t in draw_panel(CARRARA_PT_reconstruction).texts("progress") if t)
            return bpy.context.scene.carrara.runs[-1].dataset_imported

        assert pump.process_pending(180, until=imported), (run.state, run.error, run.last_log)
    run = bpy.context.scene.carrara.runs[-1]
    assert run.state == "finished" and run.error == ""
    assert any(line.startswith("Preparing: features ") for line in panel_lines), panel_lines
    assert any(line.startswith("Preparing: matching ") for line in panel_lines), panel_lines
    assert _recon().has_capture and _recon().image_count == 8
    assert readiness_problem(bpy.context.scene) is None
    texts = draw_panel(CARRARA_PT_reconstruction)
    assert ("carrara.new_from_capture", {}) in texts.operators()
    assert not [t for t in texts.texts("progress") if t]              # nothing left preparing


def test_a_missing_capture_is_refused_before_anything_is_sent(backend_preferences, tmp_path):
    with pytest.raises(ValueError, match="nowhere.mp4 does not exist"):
        ops_prepare.start_prepare(bpy.context, tmp_path / "nowhere.mp4", 100, 800)
    assert len(bpy.context.scene.carrara.runs) == 0


def test_what_the_artist_picks_becomes_the_input_and_the_dataset_goes_beside_it(tmp_path):
    photos = chair_photos(tmp_path / "garden", 3)
    assert ops_prepare.capture_source(photos / "r_95.png") == photos
    assert ops_prepare.capture_source(photos) == photos
    clip = tmp_path / "walk.MOV"
    clip.write_bytes(b"x")
    assert ops_prepare.capture_source(clip) == clip
    assert ops_prepare.dataset_folder(clip) == tmp_path / "walk_carrara"
    assert ops_prepare.dataset_folder(photos) == tmp_path / "garden_carrara"
