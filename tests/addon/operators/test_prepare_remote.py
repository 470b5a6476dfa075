"""New from photos or video… with a backend that cannot read the artist's disk, under real bpy against a real
backend subprocess started with --uploads-only on loopback: the video goes up through the upload path, the panel
shows the stages, the prepared dataset comes back through the fetch path into the folder the artist chose (every
file checked against the backend's SHA-256, a cut-short fetch resumed), is imported like a COLMAP model, and
Reconstruct on it sends its photos to the same backend and runs."""
from __future__ import annotations

import json
from pathlib import Path

import bpy
import pytest

from carrara.addon.client import pump
from carrara.addon.client.jobs import cancel_job
from carrara.addon.operators import prepare as ops_prepare
from carrara.addon.panels.backend import CARRARA_PT_jobs
from carrara.addon.panels.capture import CARRARA_PT_reconstruction
from carrara.shared.checksum import file_sha256
from sfm_inputs import chair_photos, chair_video
from testkit import draw_panel, free_tcp_port, start_backend, stop_process


def _runs():
    return bpy.context.scene.carrara.runs


def _wait(condition, timeout_s: float, what: str) -> None:
    assert pump.process_pending(timeout_s, until=condition), \
        f"timed out waiting for {what}: {[(r.kind, r.job_id, r.state, r.phase, r.error) for r in _runs()]}"


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_video_is_prepared_on_an_uploads_only_backend_fetched_imported_and_reconstructed(backend_preferences,
                                                                                            tmp_path):
    (tmp_path / "capture").mkdir()
    video = chair_video(tmp_path / "capture")
    chosen = tmp_path / "chosen dataset"
    port = free_tcp_port()
    workspace = tmp_path / "workspace"
    backend = start_backend(workspace, port, "--uploads-only")
    try:
        backend_preferences.backend_address = f"tcp://127.0.0.1:{port}"
        assert bpy.ops.carrara.new_from_capture(filepath=str(video), frames=10, max_side=400,
                                                dataset_folder=str(chosen)) == {"FINISHED"}
        panel: list[str] = []

        def imported() -> bool:
            panel.extend(t for t in draw_panel(CARRARA_PT_reconstruction).texts("progress") if t)
            return _runs()[-1].dataset_imported or bool(_runs()[-1].error)

        _wait(imported, 120, "the upload, the job, the fetch and the import")
        run = _runs()[-1]
        assert run.kind == "prepare" and run.error == "" and run.state == "finished", run.error
        for stage in ("uploading", "frames", "features", "matching", "mapping", "fetching dataset"):
            assert any(line.startswith(f"Preparing: {stage}") for line in panel), (stage, panel)

        # what arrived is the backend's dataset, byte for byte, in the folder the artist chose
        job_dir = workspace / "jobs" / run.job_id
        on_backend = _files(job_dir / "dataset")
        assert {k: v for k, v in _files(chosen).items() if k != "dataset_manifest.json"} == on_backend
        config = json.loads((job_dir / "job.json").read_text())["config"]
        assert config["dataset"]["upload_id"] and config.get("output_path") is None     # prepared from the upload
        report = json.loads((chosen / "prepare_report.json").read_text())
        recon = bpy.context.scene.carrara.reconstruction
        assert recon.has_capture and recon.image_count == report["registered"] >= 3
        assert recon.undistorted and recon.images_dir == str(chosen / "images")

        # a fetch that fails names the file and offers to fetch again; again, it resumes: a missing file, a
        # half-arrived one and a damaged one all come back whole, and the dataset is imported
        photos = sorted((chosen / "images").iterdir())
        photos[0].unlink()
        whole = photos[1].read_bytes()
        photos[1].unlink()
        photos[1].with_name(photos[1].name + ".partial").write_bytes(whole[:len(whole) // 2])
        photos[2].write_bytes(b"\0" * photos[2].stat().st_size)
        on_backend_photo = job_dir / "artifacts" / "dataset" / "images" / photos[0].name   # what fetches read
        kept = on_backend_photo.read_bytes()
        on_backend_photo.unlink()                        # the backend lost a file: this fetch cannot finish
        run.dataset_imported = False
        _wait(lambda: bool(run.error), 30, "the fetch to fail on the file the backend lost")
        assert photos[0].name in run.error, run.error
        jobs_panel = draw_panel(CARRARA_PT_jobs)
        assert ("carrara.fetch_dataset_again", {"job_id": run.job_id}) in jobs_panel.operators()
        on_backend_photo.write_bytes(kept)
        assert bpy.ops.carrara.fetch_dataset_again(job_id=run.job_id) == {"FINISHED"}
        _wait(lambda: run.dataset_imported or bool(run.error), 30, "the second fetch and the import")
        assert run.error == "" and run.dataset_imported
        assert {k: v for k, v in _files(chosen).items() if k != "dataset_manifest.json"} == on_backend
        assert ("carrara.fetch_dataset_again", {"job_id": run.job_id}) not in draw_panel(CARRARA_PT_jobs).operators()

        # Reconstruct on the imported dataset: the backend cannot read it, so its photos are uploaded, and it runs
        settings = bpy.context.scene.carrara.settings
        for name, value in {"preset": "ci", "iterations": 40, "device": "cpu", "preview_every_s": 0.0,
                            "mesh_resolution": 32, "texture_size": 64, "decimate_faces": 0}.items():
            setattr(settings, name, value)
        assert bpy.ops.carrara.reconstruct() == {"FINISHED"}
        _wait(lambda: _runs()[-1].job_id != "" and (_runs()[-1].iteration > 0 or _runs()[-1].state == "failed"), 60,
              "the photos' upload and the first training steps on them")
        assert _runs()[-1].kind == "reconstruct" and _runs()[-1].error == "" and _runs()[-1].state != "failed"
        job = json.loads((workspace / "jobs" / _runs()[-1].job_id / "job.json").read_text())
        assert job["config"]["dataset"]["upload_id"] and job["config"]["dataset"].get("path") is None
        cancel_job(_runs()[-1].job_id)
    finally:
        stop_process(backend)


def test_a_remote_backend_gets_the_capture_uploaded_and_the_dataset_a_folder_beside_the_blend(
        backend_preferences, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    photos = chair_photos(tmp_path / "garden", 3)
    (photos / "notes.txt").write_text("not a photo")
    backend_preferences.backend_address = "tcp://10.20.30.40:5555"      # another machine: nothing answers here
    run = ops_prepare.start_prepare(bpy.context, photos / "r_95.png", 100, 800)
    assert run.state == "uploading" and run.dataset_path == str(tmp_path / "carrara_datasets" / "garden")
    assert sorted(ops_prepare.capture_files(photos)) == ["r_2.png", "r_25.png", "r_95.png"]
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "thesis.docx").write_text("someone's work")
    with pytest.raises(ValueError, match="already holds files that are not a prepared dataset"):
        ops_prepare.start_prepare(bpy.context, photos, 100, 800, occupied)
    (occupied / "prepare_report.json").write_text("{}")        # a dataset prepared before is replaced
    assert ops_prepare.start_prepare(bpy.context, photos, 100, 800, occupied).dataset_path == str(occupied)
    with pytest.raises(ValueError, match="nowhere.mp4 does not exist"):
        ops_prepare.start_prepare(bpy.context, tmp_path / "nowhere.mp4", 100, 800)
    assert len(_runs()) == 2
