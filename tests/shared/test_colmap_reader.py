"""The numpy COLMAP reader/writer against pycolmap: every camera model, binary and text, rigs, layouts, real data."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from carrara.shared import colmap
from carrara.shared.camera_convention import qvec_to_rotmat
from carrara.shared.reconstruction import Points3D
from colmap_models import ALL_MODEL_NAMES, synthetic_model, write_pycolmap
from testkit import real_colmap_model, team_param


def assert_same_as_pycolmap(ours, ref: pycolmap.Reconstruction) -> None:
    assert sorted(ours.cameras) == sorted(ref.cameras)
    for camera_id, camera in ref.cameras.items():
        mine = ours.cameras[camera_id]
        assert (mine.model, mine.width, mine.height) == (camera.model.name, camera.width, camera.height)
        np.testing.assert_array_equal(mine.params, camera.params)
    assert sorted(ours.images) == sorted(ref.images)
    for image_id, image in ref.images.items():
        mine = ours.images[image_id]
        assert (mine.name, mine.camera_id) == (image.name, image.camera_id)
        pose = image.cam_from_world()
        np.testing.assert_allclose(qvec_to_rotmat(mine.qvec), pose.rotation.matrix(), atol=1e-12)
        np.testing.assert_allclose(mine.tvec, pose.translation, atol=1e-12)
        np.testing.assert_array_equal(mine.xys, np.array([p.xy for p in image.points2D]).reshape(-1, 2))
        np.testing.assert_array_equal(mine.point3d_ids, [p.point3D_id if p.has_point3D() else -1
                                                         for p in image.points2D])
    points = ours.points
    assert sorted(points.ids.tolist()) == sorted(ref.points3D)
    for i, point_id in enumerate(points.ids.tolist()):
        point = ref.points3D[point_id]
        np.testing.assert_array_equal(points.xyz[i], point.xyz)
        np.testing.assert_array_equal(points.rgb[i], point.color)
        assert points.error[i] == point.error
        track = slice(points.track_offsets[i], points.track_offsets[i + 1])
        assert list(zip(points.track_image_ids[track], points.track_point2d_idx[track])) == \
            [(e.image_id, e.point2D_idx) for e in point.track.elements]


@pytest.mark.parametrize("binary", [True, False], ids=["bin", "txt"])
@pytest.mark.parametrize("model_name", ALL_MODEL_NAMES)
def test_every_camera_model_reads_like_pycolmap(tmp_path, model_name, binary):
    ref = synthetic_model(model_name)
    folder = write_pycolmap(ref, tmp_path / "model", binary)
    assert_same_as_pycolmap(colmap.read_model(folder), ref)


def test_camera_rigs_give_each_image_its_composed_pose(tmp_path):
    """pycolmap 4 stores rig_from_world per frame; images.bin still holds each camera's composed pose."""
    ref = synthetic_model("OPENCV", rigs=2, cameras_per_rig=3, frames_per_rig=2)
    assert len(ref.cameras) == 6
    folder = write_pycolmap(ref, tmp_path / "rig")
    assert (folder / "rigs.bin").exists() and (folder / "frames.bin").exists()
    assert_same_as_pycolmap(colmap.read_model(folder), ref)


def test_written_binary_is_byte_identical_to_pycolmaps(tmp_path):
    ref = synthetic_model("FULL_OPENCV", rigs=3)
    theirs = write_pycolmap(ref, tmp_path / "theirs")
    colmap.write_model(colmap.read_model(theirs), tmp_path / "ours")
    for name in ("cameras.bin", "images.bin", "points3D.bin", "rigs.bin", "frames.bin"):
        assert (tmp_path / "ours" / name).read_bytes() == (theirs / name).read_bytes(), name


@pytest.mark.parametrize("binary", [True, False], ids=["bin", "txt"])
def test_written_model_reads_back_in_pycolmap_and_in_ours(tmp_path, binary):
    ref = synthetic_model("RADIAL", rigs=2, points=80)
    rec = colmap.read_model(write_pycolmap(ref, tmp_path / "in"))
    colmap.write_model(rec, tmp_path / "out", binary=binary)
    assert_same_as_pycolmap(colmap.read_model(tmp_path / "out"), pycolmap.Reconstruction(str(tmp_path / "out")))
    assert_same_as_pycolmap(colmap.read_model(tmp_path / "out"), ref)


def test_folder_layouts_people_have(tmp_path):
    ref = synthetic_model("SIMPLE_RADIAL")
    root = tmp_path / "workspace"
    write_pycolmap(ref, root / "sparse" / "0")
    (root / "images").mkdir()
    for image in ref.images.values():
        (root / "images" / image.name).write_bytes(b"photo")
    for given in (root, root / "sparse", root / "sparse" / "0", root / "sparse" / "0" / "cameras.bin"):
        rec = colmap.read_model(given)
        assert rec.model_dir == root / "sparse" / "0"
        assert rec.images_dir == root / "images"
    flat = tmp_path / "flat"
    write_pycolmap(ref, flat / "sparse", binary=False)
    rec = colmap.read_model(flat)
    assert rec.model_dir == flat / "sparse" and rec.images_dir is None


def test_several_submodels_pick_the_one_with_most_images(tmp_path):
    write_pycolmap(synthetic_model(frames_per_rig=2), tmp_path / "sparse" / "0")
    write_pycolmap(synthetic_model(frames_per_rig=5), tmp_path / "sparse" / "1")
    rec = colmap.read_model(tmp_path)
    assert rec.model_dir == tmp_path / "sparse" / "1" and len(rec.images) == 10
    (tmp_path / "sparse" / "1" / "points3D.bin").unlink()  # an incomplete sub-model is passed over
    assert colmap.read_model(tmp_path).model_dir == tmp_path / "sparse" / "0"


@pytest.mark.parametrize("name, photos, images_dir", [
    ("chair", 60, "../../images"), team_param("fountain", 11, "../../../images", data="strecha_fountain_p11")])
def test_real_model_reads_like_pycolmap(name, photos, images_dir):
    model = real_colmap_model(name)
    rec = colmap.read_model(model)
    assert (len(rec.cameras), len(rec.images)) == (1, photos) and len(rec.points) > 1000
    assert rec.images_dir == Path(os.path.normpath(model / images_dir))
    assert_same_as_pycolmap(rec, pycolmap.Reconstruction(str(model)))


# ------------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def good_model(tmp_path):
    return write_pycolmap(synthetic_model("PINHOLE", points=30), tmp_path / "m")


def expect_error(path, *fragments):
    with pytest.raises(colmap.ColmapError) as caught:
        colmap.read_model(path)
    message = str(caught.value)
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


def test_missing_path_and_missing_model(tmp_path):
    expect_error(tmp_path / "nowhere", "nowhere", "no such file")
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", "empty", "no COLMAP model")


def test_missing_points_file_names_it(good_model):
    (good_model / "points3D.bin").unlink()
    expect_error(good_model, "points3D.bin", "missing")


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
@pytest.mark.parametrize("keep", [0.0, 0.3, 0.97])
def test_truncated_binary_files(good_model, name, keep):
    data = (good_model / name).read_bytes()
    (good_model / name).write_bytes(data[: int(len(data) * keep)])
    expect_error(good_model, name, "truncated")


def test_trailing_garbage_is_corruption(good_model):
    with open(good_model / "points3D.bin", "ab") as file:
        file.write(b"\x01\x02\x03")
    expect_error(good_model, "points3D.bin", "unexpected bytes")


def test_unknown_camera_model_id(good_model):
    data = bytearray((good_model / "cameras.bin").read_bytes())
    data[12:16] = (42).to_bytes(4, "little", signed=True)  # the first camera's model id
    (good_model / "cameras.bin").write_bytes(bytes(data))
    expect_error(good_model, "cameras.bin", "unknown camera model id 42")


def test_image_naming_a_missing_camera(tmp_path):
    ref = synthetic_model("PINHOLE", rigs=2)
    folder = write_pycolmap(ref, tmp_path / "m", binary=False)
    lines = (folder / "cameras.txt").read_text().splitlines()
    (folder / "cameras.txt").write_text("\n".join(line for line in lines if not line.startswith("2 ")) + "\n")
    expect_error(folder, "images.txt", "names camera 2", "does not define")


def test_point_naming_a_missing_image(good_model):
    rec = colmap.read_model(good_model)
    rec.points.track_image_ids[5] = 999
    colmap.write_model(rec, good_model)
    expect_error(good_model, "points3D.bin", "image 999", "does not define")


@pytest.mark.parametrize("what", ["camera", "pose", "point"])
def test_nan_and_infinite_values(good_model, what):
    rec = colmap.read_model(good_model)
    if what == "camera":
        rec.cameras[1].params[0] = np.nan
        name = "cameras.bin"
    elif what == "pose":
        next(iter(rec.images.values())).tvec[1] = np.inf
        name = "images.bin"
    else:
        rec.points.xyz[3, 2] = -np.inf
        name = "points3D.bin"
    colmap.write_model(rec, good_model)
    expect_error(good_model, name, "NaN or infinite")


def test_nan_in_text_model(tmp_path):
    folder = write_pycolmap(synthetic_model("PINHOLE"), tmp_path / "t", binary=False)
    lines = (folder / "points3D.txt").read_text().splitlines()
    parts = lines[3].split()
    parts[1] = "nan"
    lines[3] = " ".join(parts)
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")
    expect_error(folder, "points3D.txt", "NaN or infinite")


def test_empty_model(tmp_path):
    rec = colmap.read_model(write_pycolmap(synthetic_model(), tmp_path / "m"))
    rec.images = {}
    rec.points = Points3D()
    colmap.write_model(rec, tmp_path / "empty")
    expect_error(tmp_path / "empty", "images.bin", "empty")


def test_text_garbage_and_wrong_parameter_count(tmp_path):
    folder = write_pycolmap(synthetic_model("PINHOLE"), tmp_path / "t", binary=False)
    original = (folder / "cameras.txt").read_text()
    (folder / "cameras.txt").write_text(original.replace(" PINHOLE 640 480 ", " PINHOLE 640 480 12 ", 1))
    expect_error(folder, "cameras.txt", "4 parameters", "not 5")
    (folder / "cameras.txt").write_text(original.replace(" PINHOLE 640 480 ", " PINHOLE 640 480 x", 1))
    expect_error(folder, "cameras.txt", "not a number")
    (folder / "cameras.txt").write_text(original)
    text = (folder / "points3D.txt").read_text().splitlines()
    text[4] = text[4] + " 7"  # an odd track: half a pair
    (folder / "points3D.txt").write_text("\n".join(text) + "\n")
    expect_error(folder, "points3D.txt", "line 5")


def test_unreadable_files_and_folders(good_model, tmp_path):
    shutil.move(good_model / "cameras.bin", tmp_path / "moved.bin")
    (good_model / "cameras.bin").mkdir()  # a folder where a file should be: reading it fails with an OSError
    expect_error(good_model, "cameras.bin", "cannot read")


# The reader runs in a child that, when the tests run as root (who reads any folder), drops to the unprivileged
# "nobody" once carrara is imported, so the folder's permissions bind as they do for an artist.
_READ_AS_AN_ARTIST = """
import os, sys
from carrara.shared import colmap
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    colmap.read_model(sys.argv[1])
except colmap.ColmapError as error:
    sys.exit(str(error))
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX folder permissions")
def test_folder_without_read_permission():
    with tempfile.TemporaryDirectory() as scratch:   # pytest's tmp_path is private to root; this one is not
        Path(scratch).chmod(0o755)
        model = write_pycolmap(synthetic_model("PINHOLE", points=30), Path(scratch) / "m")
        model.chmod(0)
        try:
            child = subprocess.run([sys.executable, "-c", _READ_AS_AN_ARTIST, str(model)], capture_output=True,
                                   text=True, timeout=60)
        finally:
            model.chmod(0o755)
    assert child.returncode == 1, child.stderr
    assert str(model) in child.stderr and "cannot read the folder" in child.stderr, child.stderr
