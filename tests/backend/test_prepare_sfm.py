"""Structure-from-Motion end to end on real pixels, CPU pycolmap: the chair as a short video made here (frame
choice, registration, pose accuracy against the renderer's cameras), the Strecha fountain against its ground
truth (team data), and the faults: photos with no overlap, a cancel mid-run, a disk that fills."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carrara.backend.prepare.pipeline import REPORT_NAME, prepare
from carrara.backend.prepare.progress import Cancelled, PrepareFailed
from carrara.shared.colmap import read_model
from carrara.shared.jobs import DatasetRef, PrepareConfig
from sfm_inputs import CHAIR, CHAIR_PATH, RecordingReporter, chair_photos, prepared_chair
from testkit import REPO_ROOT, shared_dataset, team_param

_spec = importlib.util.spec_from_file_location("bench_pose_accuracy", REPO_ROOT / "benchmarks" / "pose_accuracy.py")
pose_accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pose_accuracy)

STAGES = ["frames", "features", "matching", "mapping", "undistortion"]


def _config(source, **settings) -> PrepareConfig:
    return PrepareConfig(dataset=DatasetRef(path=str(source)), **settings)


def test_a_chair_video_keeps_the_sharp_frames_and_registers_them_where_the_renderer_put_them(tmp_path_factory,
                                                                                           tmp_path):
    dataset, reporter = prepared_chair(tmp_path_factory)
    report = json.loads((dataset / REPORT_NAME).read_text())
    model = read_model(dataset)
    names = sorted(image.name for image in model.images.values())
    # every kept frame is a sharp one (3k+1), one per render: the blurred copies around each lost
    assert report["video"] == {"decoded_frames": 60, "fps": 10.0, "kept_frames": 20, "dropped_blurred": 0}
    assert all(int(name[6:12]) % 3 == 1 for name in names), names
    assert report["registered"] >= 17 and len(names) == report["registered"], report
    assert {camera.model for camera in model.cameras.values()} == {"PINHOLE"}
    assert sorted(p.name for p in (dataset / "images").iterdir()) == names
    assert reporter.phases() == STAGES
    # poses against the renderer's: the frames carry the renders' cameras
    truth = read_model(CHAIR / "sparse" / "0")
    renders = {f"frame_{3 * k + 1:06d}.jpg": f"{name}.png" for k, name in enumerate(CHAIR_PATH)}
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for image in model.images.values():
        image.name = renders[image.name]
    from carrara.shared.colmap import write_model
    write_model(model, renamed)
    errors = pose_accuracy.pose_errors(renamed, CHAIR / "sparse" / "0")
    assert errors["shared_images"] == report["registered"] and len(truth.images) == 60
    # a 400 px render through H.264 is no DSLR photo (measured: 0.7 %, 1.3°); a misplaced frame is tens of degrees
    assert errors["centre_error_max_pct"] < 1.5 and errors["rotation_error_worst_pair_deg"] < 2.5, errors


def test_the_prepared_dataset_is_what_training_loads(tmp_path_factory):
    from carrara.backend.data.dataset import load_dataset
    dataset, _ = prepared_chair(tmp_path_factory)
    loaded = load_dataset(dataset)
    assert len(loaded.views) + len(getattr(loaded, "held_out", [])) >= 17


def test_photos_that_do_not_overlap_fail_at_mapping_with_what_to_do(tmp_path):
    folder = tmp_path / "walls"
    folder.mkdir()
    for seed in range(4):     # unrelated textures: features everywhere, no two photos of one scene
        noise = np.random.default_rng(seed).integers(0, 255, (120, 160), np.uint8)
        Image.fromarray(noise).resize((320, 240), Image.Resampling.NEAREST).save(folder / f"wall_{seed}.png")
    with pytest.raises(PrepareFailed, match=r"mapping: no model holds 3 or more of the 4 images.*overlap"):
        prepare(folder, tmp_path / "dataset", tmp_path / "work", _config(folder, max_features=1024),
                RecordingReporter())
    assert not (tmp_path / "dataset" / "images").exists()


def test_cancel_during_matching_leaves_the_previous_dataset_and_a_rerun_starts_clean(tmp_path):
    folder = chair_photos(tmp_path / "photos", 8)
    config = _config(folder, max_features=2048)
    out, work = tmp_path / "dataset", tmp_path / "work"
    prepare(folder, out, work, config, RecordingReporter())
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    report_before = (out / REPORT_NAME).read_text()
    cancelling = RecordingReporter().cancel_when("matching", 0)
    with pytest.raises(Cancelled):
        prepare(folder, out, work, config, cancelling)
    assert cancelling.phases()[-1] == "matching" and "mapping" not in cancelling.phases()
    assert (work / "database.db").is_file()                    # left for inspection, cleared by the next run
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == before
    assert (out / REPORT_NAME).read_text() == report_before
    again = RecordingReporter()
    result = prepare(folder, out, work, config, again)
    assert result.registered >= 6 and not work.exists()      # COLMAP varies by a photo between runs
    assert again.phases() == ["photos", "features", "matching", "mapping", "undistortion"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB filesystem (tmpfs): writes past it fail with ENOSPC. Needs the right to mount."""
    mount = tmp_path / "tiny_disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip() or 'mount failed'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_disk_that_fills_at_undistortion_fails_naming_it_and_leaves_no_half_dataset(tmp_path, tiny_disk):
    folder = chair_photos(tmp_path / "photos", 6)
    out = tiny_disk / "dataset"
    with pytest.raises(PrepareFailed, match=r"undistortion: the disk of .*tiny_disk/dataset (is full|has .* MB free)"):
        prepare(folder, out, tmp_path / "work", _config(folder, max_features=1024), RecordingReporter())
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.mark.team_data("strecha_fountain_p11")      # the chair video's poses against its renders run everywhere
def test_the_fountain_registers_every_photo_within_the_issues_accuracy(tmp_path):
    photos = shared_dataset("strecha_fountain_p11") / "images"
    reporter = RecordingReporter()
    result = prepare(photos, tmp_path / "dataset", tmp_path / "work", _config(photos, max_side=640), reporter)
    errors = pose_accuracy.pose_errors(tmp_path / "dataset",
                                       shared_dataset("strecha_fountain_p11") / "colmap_gt_poses")
    assert result.registered == 11 and errors["shared_images"] == 11 and result.matcher == "exhaustive"
    # the issue's goal: centres within 0.1 % of the extent; pairs' rotations as good as COLMAP's default (0.56°)
    assert errors["centre_error_max_pct"] < 0.1 and errors["rotation_error_worst_pair_deg"] < 0.7, errors


def _jpeg_chair(folder: Path) -> Path:
    """Sixteen chair renders in order round it, as JPEG photos on grey as a camera would write them."""
    for png in sorted(chair_photos(folder / "png", 16).glob("*.png")):
        rgba = Image.open(png)
        photo = Image.new("RGB", rgba.size, (128, 128, 128))
        photo.paste(rgba, mask=rgba.getchannel("A"))
        photo.save(folder / f"{png.stem}.jpg", quality=92)
    shutil.rmtree(folder / "png")
    return folder


@pytest.mark.parametrize("photos", ["chair", team_param("kermit", data="bundler_kermit")])
def test_a_corrupt_jpeg_among_real_photos_is_skipped_named_and_the_rest_registers(tmp_path, photos):
    folder = tmp_path / photos
    if photos == "chair":
        source = _jpeg_chair(tmp_path / "source")
    else:
        source = shared_dataset("bundler_kermit") / "images"
    shutil.copytree(source, folder)
    first = sorted(folder.glob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[:2000])               # a photo cut short, as by a full card
    reporter = RecordingReporter()
    result = prepare(folder, tmp_path / "dataset", tmp_path / "work", _config(folder, max_side=480), reporter)
    assert list(result.skipped) == [str(first)] and result.images == len(list(source.glob("*.jpg"))) - 1
    assert any(first.name in line and "skipped" in line for line in reporter.lines("warning"))
    # the rest maps: most of it (COLMAP's threads make the count vary by a photo or two: kermit gave 8 and 10 of 10)
    assert result.registered >= 0.75 * result.images, result


def test_the_cli_verb_writes_a_dataset_train_reads(tmp_path):
    folder = chair_photos(tmp_path / "photos", 8)
    done = subprocess.run([sys.executable, "-m", "carrara.backend", "prepare", str(folder), "--out",
                           str(tmp_path / "dataset"), "--max-features", "2048"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["registered"] >= 6 and set(summary["stage_seconds"]) == {"photos", *STAGES[1:]}
    assert read_model(tmp_path / "dataset").images_dir == tmp_path / "dataset" / "images"
    missing = subprocess.run([sys.executable, "-m", "carrara.backend", "prepare", str(tmp_path / "nope"), "--out",
                              str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope does not exist" in missing.stderr
