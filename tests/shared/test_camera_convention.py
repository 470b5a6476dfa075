"""Convention math against pycolmap and against its own inverses; Blender's side is checked in bpy tests."""
import numpy as np
import pycolmap
import pytest

from carrara.shared import camera_convention as cc
from colmap_models import synthetic_model


def random_quaternions(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_quaternion_to_matrix_matches_pycolmap():
    for q in random_quaternions(20):
        w, x, y, z = q
        np.testing.assert_allclose(cc.qvec_to_rotmat(q), pycolmap.Rotation3d(np.array([x, y, z, w])).matrix(),
                                   atol=1e-12)


def test_matrix_to_quaternion_inverts_for_every_angle():
    q = random_quaternions(200)
    half_turns = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0.6, 0.8, 0], [1, 0, 0, 0]], float)
    q = np.concatenate([q, half_turns])
    back = cc.rotmat_to_qvec(cc.qvec_to_rotmat(q))
    assert np.all(back[:, 0] >= 0)
    np.testing.assert_allclose(np.abs((back * q).sum(1)), 1.0, atol=1e-12)  # same rotation up to sign
    np.testing.assert_allclose(cc.qvec_to_rotmat(back), cc.qvec_to_rotmat(q), atol=1e-12)


def test_camera_centres_and_axes_match_pycolmap():
    rec = synthetic_model("PINHOLE", rigs=2, cameras_per_rig=2)
    for image in rec.images.values():
        pose = image.cam_from_world()
        w, x, y, z = (pose.rotation.quat[3], *pose.rotation.quat[:3])
        qvec, tvec = np.array([w, x, y, z]), np.array(pose.translation)
        np.testing.assert_allclose(cc.camera_centers(qvec, tvec), image.projection_center(), atol=1e-12)
        np.testing.assert_allclose(cc.viewing_directions(qvec), image.viewing_direction(), atol=1e-12)
        c2w = cc.c2w_opencv_from_colmap(qvec, tvec)
        np.testing.assert_allclose(c2w[:3, 3], image.projection_center(), atol=1e-12)
        gl = cc.c2w_opengl_from_colmap(qvec, tvec)
        np.testing.assert_allclose(gl[:3, 2], -image.viewing_direction(), atol=1e-12)  # OpenGL looks down -z
        q2, t2 = cc.colmap_from_c2w_opengl(gl)
        np.testing.assert_allclose(cc.qvec_to_rotmat(q2), cc.qvec_to_rotmat(qvec), atol=1e-12)
        np.testing.assert_allclose(t2, tvec, atol=1e-12)


def test_vectorised_poses_equal_one_by_one():
    q = random_quaternions(7)
    t = np.random.default_rng(1).normal(size=(7, 3))
    many = cc.c2w_opengl_from_colmap(q, t)
    for i in range(7):
        np.testing.assert_array_equal(many[i], cc.c2w_opengl_from_colmap(q[i], t[i]))


@pytest.mark.parametrize("matrix, problem", [
    (np.diag([2.0, 2.0, 2.0, 1.0]), "not a proper rotation"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "not a proper rotation"),
    (np.full((4, 4), np.nan), "NaN"),
    (np.eye(3), "4x4 or 3x4"),
])
def test_non_rigid_camera_matrices_are_refused(matrix, problem):
    with pytest.raises(ValueError, match=problem):
        cc.colmap_from_c2w_opengl(matrix)


@pytest.mark.parametrize("fx, fy, cx, cy, w, h", [
    (1379.74, 1382.08, 760.345, 503.405, 1536, 1024),   # the fountain
    (500.0, 650.0, 300.0, 900.0, 1080, 1920),            # portrait, fy > fx
    (700.0, 500.0, 12.5, 400.0, 640, 480),               # fx > fy, far off-centre
])
def test_blender_intrinsics_invert_exactly(fx, fy, cx, cy, w, h):
    intrinsics = cc.blender_intrinsics(w, h, fx, fy, cx, cy)
    assert min(intrinsics.pixel_aspect_x, intrinsics.pixel_aspect_y) == 1.0
    assert intrinsics.pixel_aspect_x / intrinsics.pixel_aspect_y == pytest.approx(fy / fx)
    np.testing.assert_allclose(cc.pinhole_from_blender(intrinsics), (fx, fy, cx, cy), rtol=1e-12)


def test_centred_principal_point_needs_no_shift():
    """COLMAP's image centre is (W/2, H/2) because pixel centres sit at +0.5: no half-pixel correction."""
    intrinsics = cc.blender_intrinsics(640, 480, 500.0, 500.0, 320.0, 240.0)
    assert (intrinsics.shift_x, intrinsics.shift_y) == (0.0, 0.0)
    assert intrinsics.lens_mm == pytest.approx(500.0 * 36.0 / 640)


def test_z_up_matrix_lifts_up_to_z_and_centres():
    center = np.array([3.0, -2.0, 5.0])
    for up in ([0.0, -1.0, 0.0], [0.3, 0.2, -0.9], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]):
        up = np.array(up) / np.linalg.norm(up)
        m = cc.z_up_matrix(up, center)
        np.testing.assert_allclose(m[:3, :3] @ up, [0, 0, 1], atol=1e-12)
        np.testing.assert_allclose(m[:3, :3] @ center + m[:3, 3], 0, atol=1e-12)
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0)


def test_up_direction_is_where_upright_cameras_point_their_minus_y():
    # Cameras looking horizontally around a vertical world axis +Z, held upright (image y down = world -Z).
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    rotations = []
    for a in angles:
        forward = np.array([np.cos(a), np.sin(a), 0.0])
        down = np.array([0.0, 0.0, -1.0])
        right = np.cross(down, forward)
        rotations.append(np.stack([right, down, forward]))  # rows: camera axes in world (R world->camera)
    up = cc.up_direction_from_cameras(cc.rotmat_to_qvec(np.array(rotations)))
    np.testing.assert_allclose(up, [0, 0, 1], atol=1e-12)
