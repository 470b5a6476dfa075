"""An existing COLMAP model through the prepare pipeline, real pycolmap: a distorted model (COLMAP's default
SIMPLE_RADIAL) is undistorted into a PINHOLE dataset the verdict accepts and ``train`` runs on, from the CLI too; an
undistorted one is copied as it is with a note; missing photos, a corrupt or partial model and an output on top of
the model fail naming the file, before anything is written."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from carrara.backend.data.photo_probe import PhotoProbe
from carrara.backend.prepare.pipeline import REPORT_NAME, prepare
from carrara.backend.prepare.progress import PrepareFailed
from carrara.shared.colmap import read_model
from carrara.shared.dataset_source import UNDISTORT_FIRST, judge_dataset
from carrara.shared import protocol as p
from carrara.shared.jobs import DatasetRef, PrepareConfig
from sfm_inputs import CHAIR, RecordingReporter, distorted_chair
from testkit import ServerThread, connect_client, job_events


def _prepare(model, out, reporter=None):
    return prepare(model, out, out.parent / "work", PrepareConfig(dataset=DatasetRef(path=str(model))),
                   reporter or RecordingReporter())


def test_a_distorted_model_is_undistorted_into_a_pinhole_dataset_the_verdict_accepts(tmp_path):
    model = distorted_chair(tmp_path / "garden")
    _, before = judge_dataset(model)
    assert before.refusal and before.refusal.endswith(UNDISTORT_FIRST)     # the dead end this stage opens
    assert "Undistort for Training" in UNDISTORT_FIRST and "carrara-backend prepare" in UNDISTORT_FIRST
    reporter = RecordingReporter()
    result = _prepare(model, tmp_path / "dataset", reporter)
    dataset = tmp_path / "dataset"
    assert reporter.phases() == ["model", "undistortion"]
    progress = [e for e in reporter.events if e[0] == "progress" and e[1] == "undistortion"]
    assert progress[-1][2:] == (60, 60)
    report = json.loads((dataset / REPORT_NAME).read_text())
    assert report == json.loads(json.dumps(result.__dict__))
    assert (report["source"], report["images"], report["registered"], report["undistorted_images"]) == \
        ("model", 60, 60, 60)
    assert report["camera_models_before"] == ["SIMPLE_RADIAL"] and report["camera_models_after"] == ["PINHOLE"]
    assert set(report["stage_seconds"]) == {"model", "undistortion"} and report["points"] == 1796
    out = read_model(dataset)
    assert {camera.model for camera in out.cameras.values()} == {"PINHOLE"}
    assert sorted(i.name for i in out.images.values()) == sorted(i.name for i in read_model(model).images.values())
    assert out.images_dir == dataset / "images" and not (dataset / ".undistorting").exists()
    source, verdict = judge_dataset(dataset, read_photo=PhotoProbe())
    assert verdict.errors == [], verdict.errors
    camera = next(iter(out.cameras.values()))
    with Image.open(dataset / "images" / "r_0.png") as photo:       # resampled to the undistorted camera
        assert photo.size == (camera.width, camera.height) != (400, 400)


def test_the_cli_undistorts_a_model_and_train_runs_on_the_result(tmp_path):
    model = distorted_chair(tmp_path / "garden")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "carrara.backend", "prepare", str(model / "sparse" / "0"), "--out",
                           str(tmp_path / "dataset")], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["registered"] == 60 and set(summary["stage_seconds"]) == {"model", "undistortion"}
    assert "SIMPLE_RADIAL → PINHOLE" in done.stderr + done.stdout
    trained = subprocess.run([sys.executable, "-m", "carrara.backend", "train", str(tmp_path / "dataset"), "--out",
                              str(tmp_path / "run"), "--preset", "ci", "--iters", "3", "--device", "cpu"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "run" / "meshes" / "final.ply").is_file()


def test_a_model_without_distortion_is_copied_as_it_is_with_a_note(tmp_path):
    reporter = RecordingReporter()
    result = _prepare(CHAIR, tmp_path / "dataset", reporter)
    dataset = tmp_path / "dataset"
    assert result.undistorted_images == 0 and result.camera_models_before == result.camera_models_after == ["PINHOLE"]
    assert len(result.notes) == 1 and "no lens distortion" in result.notes[0] and result.notes[0] in reporter.lines()
    assert reporter.phases() == ["model", "undistortion"]
    for name in ("cameras.bin", "images.bin", "points3D.bin", "frames.bin"):
        assert (dataset / "sparse" / "0" / name).read_bytes() == (CHAIR / "sparse" / "0" / name).read_bytes()
    photos = sorted(p.name for p in (CHAIR / "images").iterdir())
    assert sorted(p.name for p in (dataset / "images").iterdir()) == photos
    assert (dataset / "images" / photos[0]).read_bytes() == (CHAIR / "images" / photos[0]).read_bytes()
    assert judge_dataset(dataset, read_photo=PhotoProbe())[1].errors == []


def test_missing_photos_fail_naming_the_first_and_nothing_is_written(tmp_path):
    model = distorted_chair(tmp_path / "garden")
    (model / "images" / "r_2.png").unlink()
    (model / "images" / "r_5.png").unlink()
    with pytest.raises(PrepareFailed, match=r"^model: .*images/r_2\.png: photo of image \d+ is missing.*"
                                            r"\(and 1 more problem\(s\)\)\. Nothing was written"):
        _prepare(model, tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()
    shutil.rmtree(model / "images")
    with pytest.raises(PrepareFailed, match=r"^model: .*sparse/0: no folder holding its photos was found"):
        _prepare(model, tmp_path / "dataset")


def test_a_corrupt_or_partial_model_fails_naming_its_file(tmp_path):
    model = distorted_chair(tmp_path / "garden")
    cameras = model / "sparse" / "0" / "cameras.bin"
    cameras.write_bytes(cameras.read_bytes()[:20])                    # cut short
    with pytest.raises(PrepareFailed, match=r"^model: .*does not read as a dataset: .*sparse/0/cameras\.bin"):
        _prepare(model, tmp_path / "dataset")
    (model / "sparse" / "0" / "points3D.bin").unlink()
    with pytest.raises(PrepareFailed, match=r"^model: .*sparse/0/points3D\.bin: missing"):
        _prepare(model / "sparse" / "0", tmp_path / "dataset")
    with pytest.raises(PrepareFailed, match=r"^model: .*garden: no COLMAP model found"):   # not "no photos"
        _prepare(model, tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def test_an_output_inside_the_model_is_refused_and_the_photos_are_untouched(tmp_path):
    model = distorted_chair(tmp_path / "garden")
    before = sorted(p.name for p in (model / "images").iterdir())
    with pytest.raises(PrepareFailed, match=r"^output: .*images/undistorted overlaps the model's own folder"):
        _prepare(model, model / "images" / "undistorted")
    assert sorted(p.name for p in (model / "images").iterdir()) == before


def test_the_server_job_fails_a_model_with_a_missing_photo_then_undistorts_it_once_restored(tmp_path):
    model = distorted_chair(tmp_path / "garden")
    photo = model / "images" / "r_8.png"
    kept = photo.read_bytes()
    photo.unlink()
    over = lambda events: bool(events) and events[-1]["event"] == "state" and events[-1]["state"] in (
        "finished", "failed", "cancelled")
    with ServerThread(tmp_path / "workspace") as server:
        connection = connect_client(server.address)

        def submit() -> list[dict]:
            job_id = connection.call(p.MessageType.SUBMIT, {"kind": "prepare", "config": {
                "dataset": {"path": str(model)}}}).job_id
            return job_events(connection, job_id, over, timeout_s=60.0)

        events = submit()
        error = next(e for e in events if e["event"] == "error")
        assert events[-1]["state"] == "failed" and error["traceback"] == ""
        assert error["message"].startswith("model: ") and "r_8.png: photo of image" in error["message"]
        photo.write_bytes(kept)
        events = submit()
        assert events[-1]["state"] == "finished", [e for e in events if e["event"] in ("log", "error")]
        phases = [e["phase"] for e in events if e["event"] == "progress"]
        assert phases[0] == "model" and phases[-1] == "undistortion" and set(phases) == {"model", "undistortion"}
        assert any(e["event"] == "artifact" and e["artifact"]["kind"] == "dataset" for e in events)
        connection.close()
