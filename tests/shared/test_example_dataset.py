"""The bundled example (examples/chair) is a valid COLMAP model whose cameras, points and masks agree."""
from __future__ import annotations

import json
import math

import numpy as np
import pycolmap
import pytest
from PIL import Image

from carrara.shared.camera_convention import colmap_from_c2w_opengl
from testkit import REPO_ROOT, shared_dataset

EXAMPLE = REPO_ROOT / "examples" / "chair"
IMAGE_SIZE = 400
VIEWS = 60


@pytest.fixture(scope="module")
def rec() -> pycolmap.Reconstruction:
    return pycolmap.Reconstruction(str(EXAMPLE / "sparse" / "0"))


def test_one_exact_pinhole_camera(rec):
    assert list(rec.cameras) == [1]
    camera = rec.cameras[1]
    assert camera.model.name == "PINHOLE"
    assert (camera.width, camera.height) == (IMAGE_SIZE, IMAGE_SIZE)
    focal = 0.5 * IMAGE_SIZE / math.tan(0.5 * 0.6911112070083618)  # the dataset's camera_angle_x
    np.testing.assert_allclose(camera.params, [focal, focal, 200.0, 200.0], rtol=0, atol=1e-6)


def test_every_image_registered_and_present_with_alpha(rec):
    assert rec.num_images() == VIEWS and rec.num_reg_images() == VIEWS
    names = sorted(image.name for image in rec.images.values())
    assert names == sorted(p.name for p in (EXAMPLE / "images").iterdir())
    for name in names:
        with Image.open(EXAMPLE / "images" / name) as photo:
            assert photo.mode == "RGBA" and photo.size == (IMAGE_SIZE, IMAGE_SIZE), name
            alpha = np.asarray(photo.getchannel("A"))
        assert alpha.min() == 0 and alpha.max() == 255, f"{name}: alpha is not an object mask"


def _observations(rec: pycolmap.Reconstruction):
    """Per image: observed pixel positions, the 3D points they see, and the image."""
    for image in rec.images.values():
        seen = [p for p in image.points2D if p.has_point3D()]
        xy = np.array([p.xy for p in seen])
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in seen])
        yield image, xy, xyz


def test_points_reproject_within_a_pixel(rec):
    assert rec.num_points3D() > 1000
    camera = rec.cameras[1]
    fx, fy, cx, cy = camera.params
    errors = []
    for image, xy, xyz in _observations(rec):
        pose = image.cam_from_world()
        cam = xyz @ pose.rotation.matrix().T + pose.translation
        assert np.all(cam[:, 2] > 0), f"{image.name}: a point it sees lies behind it"
        projected = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], axis=1)
        errors.append(np.linalg.norm(projected - xy, axis=1))
    errors = np.concatenate(errors)
    assert errors.mean() < 1.0
    assert errors.max() < 4.0  # COLMAP's own triangulation filter


def test_observations_fall_on_the_chair(rec):
    for image, xy, _ in _observations(rec):
        with Image.open(EXAMPLE / "images" / image.name) as photo:
            alpha = np.asarray(photo.getchannel("A"))
        col, row = np.floor(xy).astype(int).T
        on_chair = alpha[row, col] > 0
        assert on_chair.mean() > 0.99, f"{image.name}: {np.sum(~on_chair)} keypoints on the background"


def test_cameras_orbit_the_chair_as_the_renderer_placed_them(rec):
    """Every NeRF-synthetic camera sits 4.0311 from the origin, looks straight at it, upright and without roll: a
    pose converted with the wrong axes (OpenGL's -z forward, +y up) breaks one of these."""
    for image in rec.images.values():
        pose = image.cam_from_world()
        rotation = pose.rotation.matrix()                  # rows: the camera's x, y, z axes in the world
        centre = -rotation.T @ pose.translation
        assert np.linalg.norm(centre) == pytest.approx(4.0311289, abs=1e-6), image.name
        np.testing.assert_allclose(rotation[2], -centre / np.linalg.norm(centre), atol=1e-5, err_msg=image.name)
        assert abs(rotation[0, 2]) < 1e-6, f"{image.name}: the image's x axis is not level"
        assert -rotation[1, 2] > 0, f"{image.name}: upside down (the image's up points below the horizon)"


@pytest.mark.team_data("nerf_synthetic_chair")
def test_poses_are_the_renderer_cameras(rec):
    """Against the renderer's own transforms_train.json, which only the team's data holds (the bundle is 60 of its
    100 views)."""
    source = shared_dataset("nerf_synthetic_chair")
    frames = json.loads((source / "transforms_train.json").read_text())["frames"]
    c2w_by_name = {frame["file_path"].split("/")[-1] + ".png": frame["transform_matrix"] for frame in frames}
    for image in rec.images.values():
        qvec, tvec = colmap_from_c2w_opengl(np.array(c2w_by_name[image.name]))
        pose = image.cam_from_world()
        # The json holds float32 matrices; 1e-6 here moves a projection by ~1e-4 px, far below any real error.
        np.testing.assert_allclose(pose.translation, tvec, atol=1e-6, err_msg=image.name)
        xyzw = pose.rotation.quat
        assert abs(abs(np.dot([xyzw[3], *xyzw[:3]], qvec)) - 1.0) < 1e-9, image.name


def test_small_and_licensed():
    total = sum(p.stat().st_size for p in EXAMPLE.rglob("*") if p.is_file())
    assert total < 8 * 1024 * 1024
    assert "chair by 1DInc (CC-0): https://www.blendswap.com/blend/8261" in (EXAMPLE / "SOURCE.md").read_text()
