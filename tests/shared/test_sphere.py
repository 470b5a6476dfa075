"""Sphere rules: others' reproduced faithfully, ours robust to strays, warnings that fire when they should."""
import itertools

import numpy as np
import pytest

from carrara.shared import colmap, sphere as sp
from carrara.shared.camera_convention import rotmat_to_qvec
from carrara.shared.reconstruction import Camera, Image, Points3D, Reconstruction
from carrara.shared.transforms_json import read_transforms
from testkit import real_colmap_model, shared_dataset, team_param, write_nerf_synthetic_chair


def ring_of_cameras(target, distance, n=12, height=0.5, fov_focal=500.0, size=(640, 480)):
    """A reconstruction whose cameras circle ``target`` and look at it (an object capture)."""
    cameras = {1: Camera(1, "PINHOLE", size[0], size[1], np.array([fov_focal, fov_focal, size[0] / 2, size[1] / 2]))}
    images = {}
    for i, a in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False)):
        centre = target + distance * np.array([np.cos(a), np.sin(a), height]) / np.hypot(1, height)
        forward = (target - centre) / np.linalg.norm(target - centre)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rot = np.stack([right, down, forward])
        images[i + 1] = Image(i + 1, f"{i}.jpg", 1, rotmat_to_qvec(rot), -rot @ centre)
    return Reconstruction(cameras, images, Points3D())


def with_points(rec, xyz, track_length=3):
    n = len(xyz)
    rec.points = Points3D(np.arange(1, n + 1), xyz, np.zeros((n, 3), np.uint8), np.zeros(n),
                          np.arange(n + 1) * track_length, np.ones(n * track_length, np.int64),
                          np.zeros(n * track_length, np.int64))
    return rec


def test_neuralangelo_pose_rule_matches_its_pairwise_least_squares():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(9, 3)) * 4
    directions = rng.normal(size=(9, 3))
    directions[3] = directions[2]  # a parallel pair besides the self-pairs
    total = np.zeros(3)
    for p1, d1 in zip(centers, directions):  # Neuralangelo's loop, literally, with numpy's lstsq
        for p2, d2 in zip(centers, directions):
            d1n, d2n = d1 / np.linalg.norm(d1), d2 / np.linalg.norm(d2)
            t1, t2 = np.linalg.lstsq(np.vstack((d1n, -d2n)).T, p2 - p1, rcond=None)[0]
            total += 0.5 * (p1 + d1n * t1 + p2 + d2n * t2)
    sphere = sp.sphere_from_poses_neuralangelo(centers, directions)
    np.testing.assert_allclose(sphere.center, total / 81, atol=1e-9)
    assert sphere.radius == pytest.approx(np.linalg.norm(centers, axis=1).mean())


def test_point_rules_as_published():
    xyz = np.random.default_rng(0).normal(size=(1000, 3)) * [1, 2, 3] + 5
    neuralangelo = sp.sphere_from_points_neuralangelo(xyz)
    np.testing.assert_allclose(neuralangelo.center, xyz.mean(0))
    assert neuralangelo.radius == pytest.approx(3 * xyz.std(0).max())
    farthest = sp.sphere_max_distance(xyz)
    assert farthest.contains(xyz).all()
    assert farthest.radius == pytest.approx(np.linalg.norm(xyz - farthest.center, axis=1).max())


def test_robust_fit_ignores_stray_points_the_others_follow():
    rng = np.random.default_rng(1)
    core = rng.uniform(-1, 1, size=(5000, 3))
    strays = rng.uniform(-50, 50, size=(50, 3))  # 1% far-away strays
    xyz = np.concatenate([core, strays])
    clean, ours = sp.fit_sphere_to_points(core), sp.fit_sphere_to_points(xyz)
    assert np.linalg.norm(ours.center) < 0.05 and ours.contains(core).mean() > 0.97
    assert ours.radius / clean.radius < 1.05
    assert sp.sphere_max_distance(xyz).radius > 20 * clean.radius
    assert sp.sphere_from_points_neuralangelo(xyz).radius > 2 * sp.sphere_from_points_neuralangelo(core).radius
    everything = sp.fit_sphere_to_points(xyz, coverage=1.0)
    assert everything.contains(xyz * (1 - 1e-12)).all()


def test_cameras_view_sphere_fills_their_narrower_field_of_view():
    target = np.array([1.0, -2.0, 0.5])
    rec = ring_of_cameras(target, distance=10.0)
    np.testing.assert_allclose(sp.closest_point_to_axes(*sp.camera_axes(rec)), target, atol=1e-9)
    view = sp.fit_sphere_to_camera_views(rec)
    np.testing.assert_allclose(view.center, target, atol=1e-9)
    assert view.radius == pytest.approx(10.0 * np.sin(np.arctan(240 / 500)))


def test_parallel_cameras_have_no_common_view_point():
    rec = ring_of_cameras(np.zeros(3), 5.0, n=4)
    for image in rec.images.values():  # all looking the same way
        image.qvec = rec.images[1].qvec.copy()
    assert sp.closest_point_to_axes(*sp.camera_axes(rec)) is None
    assert sp.fit_sphere_to_camera_views(rec).radius > 0


def test_object_estimate_holds_the_object_not_the_background_or_cameras():
    rng = np.random.default_rng(2)
    obj = rng.uniform(-0.8, 0.8, size=(3000, 3))
    wall = np.column_stack([rng.uniform(-30, 30, 600), np.full(600, 25.0), rng.uniform(-10, 10, 600)])
    rec = with_points(ring_of_cameras(np.zeros(3), 6.0), np.concatenate([obj, wall]))
    sphere = sp.estimate_sphere(rec, "object")
    assert sphere.contains(obj).mean() > 0.97
    assert not sphere.contains(sp.camera_axes(rec)[0]).any()
    assert sphere.radius < 2.0
    assert sp.sphere_warnings(sphere, obj, sp.camera_axes(rec)[0], "object") == []


def test_indoor_estimate_holds_every_camera():
    rng = np.random.default_rng(4)
    room = rng.uniform(-5, 5, size=(4000, 3))
    rec = with_points(ring_of_cameras(np.zeros(3), 4.0), room)
    sphere = sp.estimate_sphere(rec, "indoor")
    assert sphere.contains(sp.camera_axes(rec)[0]).all()
    assert sp.sphere_warnings(sphere, room, sp.camera_axes(rec)[0], "indoor") == []


def test_warnings_fire_for_each_mistake():
    rng = np.random.default_rng(5)
    points = rng.uniform(-1, 1, size=(2000, 3))
    cams = np.array([[5.0, 0, 0], [0, 5.0, 0], [0.5, 0, 0]])
    small = sp.BoundingSphere(np.zeros(3), 0.01)
    messages = sp.sphere_warnings(small, points, cams, "object")
    assert any("holds only" in m for m in messages) and any("tiny" in m for m in messages)
    messages = sp.sphere_warnings(sp.BoundingSphere(np.zeros(3), 2.0), points, cams, "object")
    assert messages == [next(m for m in messages if "1 of 3 cameras are inside" in m)]
    assert any("outside the sphere" in m for m in
               sp.sphere_warnings(sp.BoundingSphere(np.zeros(3), 2.0), points, cams, "indoor"))
    assert any("huge" in m for m in sp.sphere_warnings(sp.BoundingSphere(np.zeros(3), 1e4), points, cams,
                                                       "outdoor"))
    with pytest.raises(ValueError, match="scene type"):
        sp.sphere_warnings(small, points, cams, "garden")


def test_sphere_must_be_finite_and_positive():
    for center, radius in ((np.zeros(3), 0.0), (np.zeros(3), -1.0), (np.array([np.nan, 0, 0]), 1.0)):
        with pytest.raises(ValueError):
            sp.BoundingSphere(center, radius)


@pytest.mark.parametrize("source", ["chair", team_param("team-chair", data="nerf_synthetic_chair")])
def test_chair_estimate_keeps_cameras_out_and_centres_on_the_object(tmp_path, source):
    """From the cameras alone (a NeRF-synthetic transforms.json has no points): the bundled 60 views or all 100."""
    json_path = write_nerf_synthetic_chair(tmp_path) if source == "chair" else \
        shared_dataset("nerf_synthetic_chair") / "transforms_train.json"
    rec, _ = read_transforms(json_path)
    sphere = sp.estimate_sphere(rec, "object")
    centres = sp.camera_axes(rec)[0]
    assert np.linalg.norm(sphere.center) < 0.2 and 1.0 < sphere.radius < 2.0
    assert not sphere.contains(centres).any()
    # Neuralangelo's pose rule puts every camera of this capture on the sphere's surface
    assert sp.sphere_from_poses_neuralangelo(*sp.camera_axes(rec)).radius == pytest.approx(4.0311, abs=1e-3)


@pytest.mark.parametrize("name", ["chair", team_param("fountain", data="strecha_fountain_p11")])
def test_real_model_estimate_holds_most_points(name):
    rec = colmap.read_model(real_colmap_model(name))
    for scene_type in ("object", "outdoor"):
        sphere = sp.estimate_sphere(rec, scene_type)
        assert sphere.contains(rec.points.xyz).mean() > 0.9
        assert not sphere.contains(sp.camera_axes(rec)[0]).any()


def test_smallest_sphere_is_exact_against_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(10):
        xyz = rng.normal(size=(10, 3)) * [1.0, 2.0, 0.5]
        best = np.inf
        for k in (2, 3, 4):  # the smallest sphere passes through 2 to 4 of the points
            for chosen in itertools.combinations(xyz, k):
                center, radius = sp._sphere_through(tuple(map(tuple, chosen)))
                if np.all(np.linalg.norm(xyz - center, axis=1) <= radius + 1e-9):
                    best = min(best, radius)
        found = sp.minimal_enclosing_sphere(xyz)
        assert found.contains(xyz * (1 - 1e-12) + found.center * 1e-12).all()
        assert found.radius == pytest.approx(best, rel=1e-9)
