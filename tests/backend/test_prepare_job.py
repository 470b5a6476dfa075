"""The ``prepare`` job on the real server: stage progress reaches the client, the dataset and its report land in
the job's folder, bad input fails with a message and the server goes on serving, cancel stops it mid-run, and a
video sent through the upload path (a backend that cannot see the artist's disk) is prepared from the upload."""
from __future__ import annotations

import json
import time

import pytest

from carrara.addon.client.connection import Connection, RemoteError
from carrara.shared import protocol as p
from carrara.shared.checksum import file_sha256
from carrara.shared.dataset_manifest import read_manifest
from sfm_inputs import chair_photos
from testkit import ServerThread, connect_client, job_events

TERMINAL = {"finished", "failed", "cancelled", "interrupted"}




def _over(events) -> bool:
    return bool(events) and events[-1]["event"] == "state" and events[-1]["state"] in TERMINAL


def _submit(connection: Connection, source, **settings) -> str:
    return connection.call(p.MessageType.SUBMIT, {"kind": "prepare", "config": {
        "dataset": {"path": str(source)}, "max_features": 2048, **settings}}).job_id


def test_a_prepare_job_reports_each_stage_and_publishes_its_dataset(tmp_path):
    photos = chair_photos(tmp_path / "photos", 8)
    with ServerThread(tmp_path / "workspace") as server:
        connection = connect_client(server.address)
        assert "prepare" in connection.welcome["job_kinds"]
        job_id = _submit(connection, photos)
        events = job_events(connection, job_id, _over, timeout_s=180.0)
        assert events[-1]["state"] == "finished", [e for e in events if e["event"] in ("log", "error")]
        phases = [e["phase"] for e in events if e["event"] == "progress"]
        assert [ph for i, ph in enumerate(phases) if ph not in phases[:i]] == \
            ["photos", "features", "matching", "mapping", "undistortion"]
        mapping = [(e["iteration"], e["total"]) for e in events if e["event"] == "progress" and e["phase"] == "mapping"]
        registered, total = mapping[-1]            # COLMAP's threads vary the count by a photo (7 or 8 of 8 seen)
        assert total == 8 and registered >= 6, mapping
        report_ref = next(e["artifact"] for e in events if e["event"] == "artifact")
        assert report_ref["kind"] == "report" and report_ref["name"] == "prepare_report.json"
        job_dir = server.server.workspace.job_dir(job_id)
        report = json.loads((job_dir / "artifacts" / "prepare_report.json").read_text())
        assert report["dataset"] == str(job_dir / "dataset") and report["registered"] == registered
        assert (job_dir / "dataset" / "sparse" / "0" / "cameras.bin").is_file() and not (job_dir / "sfm").exists()
        connection.close()


def test_bad_input_fails_with_its_message_and_cancel_stops_a_running_job(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("film the chair")
    photos = chair_photos(tmp_path / "photos", 8)
    with ServerThread(tmp_path / "workspace") as server:
        connection = connect_client(server.address)
        bad = _submit(connection, notes)
        events = job_events(connection, bad, _over, timeout_s=180.0)
        error = next(e for e in events if e["event"] == "error")
        assert events[-1]["state"] == "failed" and error["traceback"] == ""
        assert "holds no photos" in error["message"] and "todo.txt" in error["message"]
        job_id = _submit(connection, photos)
        job_events(connection, job_id, lambda evs: any(e["event"] == "progress" and e["phase"] == "features"
                                                      for e in evs), timeout_s=180.0)
        connection.call(p.MessageType.CANCEL, job_id=job_id)
        events = job_events(connection, job_id, _over, timeout_s=180.0)
        assert events[-1]["state"] == "cancelled"
        assert not any(e["event"] == "progress" and e["phase"] == "mapping" for e in events)
        job_dir = server.server.workspace.job_dir(job_id)
        assert not (job_dir / "dataset" / "images").exists()
        connection.close()


def test_a_video_uploaded_to_a_backend_that_cannot_see_it_is_prepared_from_the_upload(tmp_path):
    from carrara.addon.client.transfers import DatasetUpload, TransferState
    from sfm_inputs import chair_video
    clip = chair_video(tmp_path)
    with ServerThread(tmp_path / "workspace", uploads_only=True) as server:
        connection = connect_client(server.address)
        with pytest.raises(RemoteError) as refused:        # the add-on's cue to upload the capture
            connection.call(p.MessageType.SUBMIT, {"kind": "prepare", "config": {"dataset": {"path": str(clip)}}})
        assert refused.value.code == p.ErrorCode.NEEDS_UPLOAD
        upload = DatasetUpload({"walk.mp4": clip})
        deadline = time.monotonic() + 60
        while upload.state == TransferState.RUNNING:
            assert time.monotonic() < deadline, "upload timed out"
            upload.step(connection)
            connection.poll(0.01)
        assert upload.state == TransferState.DONE, upload.error
        with pytest.raises(RemoteError) as refused:         # a client may not name where this backend writes
            connection.call(p.MessageType.SUBMIT, {"kind": "prepare", "config": {
                "dataset": {"upload_id": upload.upload_id}, "output_path": str(tmp_path / "elsewhere")}})
        assert refused.value.code == p.ErrorCode.BAD_FIELD and "output_path" in str(refused.value)
        job_id = connection.call(p.MessageType.SUBMIT, {"kind": "prepare", "config": {
            "dataset": {"upload_id": upload.upload_id}, "frames": 10, "max_features": 1024}}).job_id
        events = job_events(connection, job_id, _over, timeout_s=180.0)
        assert events[-1]["state"] == "finished", [e for e in events if e["event"] in ("log", "error")]
        assert any("walk.mp4: 60 frames" in e.get("line", "") for e in events)
        report = json.loads((server.server.workspace.job_dir(job_id) / "artifacts" / "prepare_report.json").read_text())
        assert report["source"] == "video" and report["images"] == 10 and report["registered"] >= 3
        job_dir = server.server.workspace.job_dir(job_id)      # the dataset, published for the client to fetch
        manifest = read_manifest(job_dir / "artifacts" / "dataset_manifest.json")
        assert {e.path: e.sha256 for e in manifest} == {
            f.relative_to(job_dir / "dataset").as_posix(): file_sha256(f)
            for f in (job_dir / "dataset").rglob("*") if f.is_file()}
        assert all((job_dir / "artifacts" / "dataset" / e.path).is_file() for e in manifest)
        assert not (tmp_path / "elsewhere").exists()
        connection.close()
