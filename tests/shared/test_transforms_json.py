"""transforms.json read and written: NeRF/instant-ngp files (made from the bundled chair, and the team's originals),
round trips, and what Neuralangelo's loader reads."""
import json
from pathlib import Path

import numpy as np
import pytest

from carrara.shared import colmap
from carrara.shared.camera_convention import c2w_opengl_from_colmap, qvec_to_rotmat
from carrara.shared.sphere import BoundingSphere
from carrara.shared.transforms_json import TransformsError, read_transforms, write_transforms
from colmap_models import synthetic_model
from testkit import INSTANT_NGP_DISTORTION, real_colmap_model, shared_dataset, team_param, write_instant_ngp_chair, \
    write_nerf_synthetic_chair


@pytest.fixture(params=["chair", team_param("team-chair", data="nerf_synthetic_chair")])
def nerf_synthetic(request, tmp_path):
    """A NeRF-synthetic transforms_train.json and its frame count: the bundled chair's 60 views in that vocabulary,
    or the team's original with all 100."""
    if request.param == "chair":
        return write_nerf_synthetic_chair(tmp_path), 60
    return shared_dataset("nerf_synthetic_chair") / "transforms_train.json", 100


def test_nerf_synthetic_angles_and_extensionless_paths(nerf_synthetic):
    path, frames = nerf_synthetic
    rec, extras = read_transforms(path)
    assert len(rec.images) == frames and not extras.missing_files and extras.sphere is None
    (camera,) = rec.cameras.values()
    assert (camera.model, camera.width, camera.height) == ("PINHOLE", 400, 400)  # size read from the PNGs
    meta = json.loads(path.read_text())
    focal = 200.0 / np.tan(meta["camera_angle_x"] / 2)
    np.testing.assert_allclose(camera.params, [focal, focal, 200.0, 200.0])
    assert meta["frames"][0]["file_path"] == "./train/r_0"
    assert rec.images[1].name == "train/r_0.png" and (rec.images_dir / rec.images[1].name).is_file()
    for image, frame in zip(rec.images.values(), meta["frames"]):
        # the team file's float32 matrices are rotations to ~1e-6; the camera centres are kept exactly
        np.testing.assert_allclose(c2w_opengl_from_colmap(image.qvec, image.tvec), frame["transform_matrix"],
                                   atol=1e-5)
        np.testing.assert_allclose(c2w_opengl_from_colmap(image.qvec, image.tvec)[:3, 3],
                                   np.array(frame["transform_matrix"])[:3, 3], atol=1e-13)
    centres = np.array([-qvec_to_rotmat(im.qvec).T @ im.tvec for im in rec.images.values()])
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 4.0311, atol=1e-3)


def test_the_chair_read_from_json_has_the_cameras_of_its_colmap_model(tmp_path):
    """COLMAP -> transforms.json -> COLMAP gives back the bundled model's poses and intrinsics, and its points
    reproject onto their observations through the cameras read from the json."""
    model = colmap.read_model(real_colmap_model("chair"))
    rec, _ = read_transforms(write_nerf_synthetic_chair(tmp_path))
    by_name = {Path(im.name).name: im for im in rec.images.values()}
    xyz_by_id = dict(zip(model.points.ids.tolist(), model.points.xyz))
    fx, fy, cx, cy = rec.cameras[1].params
    for original in model.images.values():
        read = by_name[original.name]
        np.testing.assert_allclose(qvec_to_rotmat(read.qvec), qvec_to_rotmat(original.qvec), atol=1e-12)
        np.testing.assert_allclose(read.tvec, original.tvec, atol=1e-12)
        seen = original.point3d_ids >= 0
        cam = np.array([xyz_by_id[i] for i in original.point3d_ids[seen]]) @ qvec_to_rotmat(read.qvec).T + read.tvec
        uv = cam[:, :2] / cam[:, 2:] * [fx, fy] + [cx, cy]
        assert np.median(np.linalg.norm(uv - original.xys[seen], axis=1)) < 1.0, original.name  # 0.47 px mean


@pytest.fixture(params=["chair", team_param("team-fox", data="instant_ngp_fox")])
def instant_ngp_with_gaps(request, tmp_path):
    """An instant-ngp transforms.json whose frames name absent photos, with its photos' size and lens distortion:
    the bundled chair written that way (60 frames, 45 photos), or the team's fox (67 frames, 50 photos)."""
    if request.param == "chair":
        return write_instant_ngp_chair(tmp_path).parent, (60, 45), (400, 400), list(INSTANT_NGP_DISTORTION.values())
    return shared_dataset("instant_ngp_fox"), (67, 50), (540, 960), [0.0578421, -0.0805099, -0.000980296, 0.00015575]


def test_instant_ngp_skips_and_lists_missing_photos(instant_ngp_with_gaps):
    root, (frames, present), size, distortion = instant_ngp_with_gaps
    rec, extras = read_transforms(root)
    listed = [frame["file_path"] for frame in json.loads((root / "transforms.json").read_text())["frames"]]
    absent = [name for name in listed if not (root / name).is_file()]
    assert (len(listed), len(rec.images)) == (frames, present) and extras.missing_files == absent
    assert f"{frames - present} of {frames} frames" in extras.warnings[0] and absent[0] in extras.warnings[0]
    (camera,) = rec.cameras.values()
    assert camera.model == "OPENCV" and (camera.width, camera.height) == size
    np.testing.assert_allclose(camera.params[4:], distortion)
    assert extras.aabb_scale == 4.0
    assert all((rec.images_dir / im.name).is_file() for im in rec.images.values())


def neuralangelo_cameras(root):
    """What projects/neuralangelo/data.py computes from a transforms.json, in numpy: K and normalised w2c."""
    meta = json.loads((root / "transforms.json").read_text())
    k = np.array([[meta["fl_x"], meta["sk_x"], meta["cx"]], [meta["sk_y"], meta["fl_y"], meta["cy"]], [0, 0, 1]])
    out = []
    for frame in meta["frames"]:
        c2w = np.array(frame["transform_matrix"]) * np.array([1, -1, -1, 1])  # _gl_to_cv
        c2w[:3, 3] = (c2w[:3, 3] - np.array(meta["sphere_center"])) / meta["sphere_radius"]
        rot = c2w[:3, :3].T
        out.append((frame["file_path"], k, rot, -rot @ c2w[:3, 3]))
    return meta, out


@pytest.mark.parametrize("name, sphere, median_px", [
    ("chair", BoundingSphere(np.array([0.1, -0.05, 0.2]), 1.4), 1.0),       # SIFT on 400x400 renders: 0.47 px mean
    team_param("fountain", BoundingSphere(np.array([-16.5, -11.0, -1.0]), 6.0), 0.5,  # 1536x1024: 0.25 px mean
               data="strecha_fountain_p11"),
])
def test_exported_model_reprojects_through_neuralangelos_loader(tmp_path, name, sphere, median_px):
    rec = colmap.read_model(real_colmap_model(name))
    workspace = tmp_path / name
    assert write_transforms(workspace / "transforms.json", rec, sphere) == []
    meta, cameras = neuralangelo_cameras(workspace)
    assert meta["sphere_radius"] == sphere.radius and meta["aabb_range"] == sphere.aabb().tolist()
    by_name = {im.name: im for im in rec.images.values()}
    xyz_by_id = dict(zip(rec.points.ids.tolist(), rec.points.xyz))
    for file_path, k, rot, t in cameras:
        assert (workspace / file_path).is_file()  # the loader opens f"{root}/{file_path}"
        image = by_name[file_path.rsplit("/", 1)[-1]]
        seen = image.point3d_ids >= 0
        xyz = (np.array([xyz_by_id[i] for i in image.point3d_ids[seen]]) - sphere.center) / sphere.radius
        cam = xyz @ rot.T + t
        uv = (cam @ k.T)[:, :2] / cam[:, 2:]
        expected = (xyz * sphere.radius + sphere.center) @ qvec_to_rotmat(image.qvec).T + image.tvec
        expected = (expected @ k.T)[:, :2] / expected[:, 2:]
        np.testing.assert_allclose(uv, expected, atol=1e-6)
        # and against the photo's own measurements
        assert np.median(np.linalg.norm(uv - image.xys[seen], axis=1)) < median_px, image.name


@pytest.mark.parametrize("name", ["chair", team_param("fountain", data="strecha_fountain_p11")])
def test_round_trip_keeps_poses_intrinsics_and_bounds(tmp_path, name):
    rec = colmap.read_model(real_colmap_model(name))
    sphere = BoundingSphere(np.array([1.0, 2.0, 3.0]), 4.5)
    aabb = np.array([[-1.0, 1.0], [-2.0, 2.5], [0.0, 3.0]])
    write_transforms(tmp_path / "transforms.json", rec, sphere, aabb)
    back, extras = read_transforms(tmp_path / "transforms.json")
    np.testing.assert_array_equal(extras.sphere.center, sphere.center)
    assert extras.sphere.radius == sphere.radius
    np.testing.assert_array_equal(extras.aabb_range, aabb)
    assert back.cameras[1].model == "PINHOLE"
    np.testing.assert_array_equal(back.cameras[1].params, rec.cameras[1].params)
    originals = sorted(rec.images.values(), key=lambda im: im.name)
    for original, read in zip(originals, back.images.values()):
        assert (back.images_dir / read.name).resolve() == (rec.images_dir / original.name).resolve()
        np.testing.assert_allclose(qvec_to_rotmat(read.qvec), qvec_to_rotmat(original.qvec), atol=1e-14)
        np.testing.assert_allclose(read.tvec, original.tvec, atol=1e-12)


def test_several_cameras_and_distortion_warn_and_travel_per_frame(tmp_path):
    ref = synthetic_model("OPENCV", rigs=3)
    colmap.write_model(colmap.read_model(_pycolmap_folder(ref, tmp_path)), tmp_path / "m")
    rec = colmap.read_model(tmp_path / "m")
    for i, camera in enumerate(rec.cameras.values()):
        camera.params[0] += i  # make the three cameras really differ
    warnings = write_transforms(tmp_path / "out" / "transforms.json", rec, BoundingSphere(np.zeros(3), 2.0))
    assert any("3 different cameras" in w for w in warnings)
    assert any("distortion" in w for w in warnings)
    assert any("photos' folder is unknown" in w for w in warnings)
    meta = json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert all("fl_x" in frame and "k1" in frame for frame in meta["frames"])
    (tmp_path / "out" / "images").mkdir()
    for image in rec.images.values():
        (tmp_path / "out" / "images" / image.name).write_bytes(b"")
    back, _ = read_transforms(tmp_path / "out")
    assert sorted(tuple(c.params) for c in back.cameras.values()) == \
        sorted(tuple(c.params) for c in rec.cameras.values())


def _pycolmap_folder(ref, tmp_path):
    folder = tmp_path / "pyc"
    folder.mkdir()
    ref.write_binary(str(folder))
    return folder


def test_distortion_the_vocabulary_cannot_hold_is_reported(tmp_path):
    rec = colmap.read_model(_pycolmap_folder(synthetic_model("FOV"), tmp_path))
    warnings = write_transforms(tmp_path / "t.json", rec, BoundingSphere(np.zeros(3), 1.0))
    assert any("omega" in w for w in warnings)


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not valid JSON"),
    ('{"fl_x": 10}', "'frames'"),
    ('{"w": 4, "h": 4, "frames": [{"file_path": "a.png", "transform_matrix": [[2,0,0,0],[0,2,0,0],[0,0,2,0],'
     '[0,0,0,1]]}]}', "frames[0].transform_matrix"),
    ('{"w": 4, "h": 4, "frames": [{"file_path": "a.png", "transform_matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,0],'
     '[0,0,0,1]]}]}', "focal length"),
    ('{"w": 4, "h": 4, "fl_x": 3, "frames": [{"file_path": "gone.png", "transform_matrix": '
     '[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}', "none of the 1 frames"),
    ('{"w": 4, "h": 4, "fl_x": NaN, "frames": [{"file_path": "a.png", "transform_matrix": '
     '[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}', "'fl_x' must be a finite number"),
])
def test_bad_files_name_the_field(tmp_path, content, fragment):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "transforms.json").write_text(content)
    with pytest.raises(TransformsError) as caught:
        read_transforms(tmp_path)
    assert fragment in str(caught.value) and "transforms.json" in str(caught.value)
