"""Datasets: normalisation, the checks that stop bad input before training, photos within a memory budget."""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from carrara.backend.data.dataset import DatasetError, load_dataset, split_views
from carrara.backend.data.images import MIN_BATCHES_PER_CHUNK, ImageStore
from carrara.backend.data.rays import camera_rays, intersect_unit_sphere
from carrara.shared.camera_convention import colmap_from_c2w_opencv
from carrara.shared.colmap import write_model
from carrara.shared.reconstruction import Camera, Image, Points3D, Reconstruction
from carrara.shared.sphere import BoundingSphere
from testkit import shared_dataset, team_param, write_nerf_synthetic_chair

CENTER = np.array([2.0, -1.0, 0.5])
RADIUS = 0.75
SPHERE = BoundingSphere(CENTER, RADIUS)


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(forward, right), forward, eye
    return c2w


def write_capture(folder: Path, *, views: int = 6, size: tuple[int, int] = (40, 30), camera_model: str = "PINHOLE",
                  rgba: bool = False) -> Path:
    """A tiny COLMAP workspace of random-noise photos around SPHERE."""
    width, height = size
    (folder / "images").mkdir(parents=True, exist_ok=True)
    params = [35.0, 35.0, width / 2, height / 2] + ([0.05, 0.0, 0.0, 0.0] if camera_model == "OPENCV" else [])
    images = {}
    rng = np.random.default_rng(7)
    for i in range(views):
        angle = 2 * math.pi * i / views
        eye = CENTER + 3 * RADIUS * np.array([math.cos(angle), math.sin(angle), 0.3])
        qvec, tvec = colmap_from_c2w_opencv(_look_at(eye, CENTER))
        name = f"p{i:02d}.png"
        noise = rng.integers(0, 256, (height, width, 4 if rgba else 3), dtype=np.uint8)   # every pixel differs
        PILImage.fromarray(noise).save(folder / "images" / name)
        images[i + 1] = Image(i + 1, name, 1, qvec, tvec)
    rec = Reconstruction({1: Camera(1, camera_model, width, height, np.array(params))}, images, Points3D())
    write_model(rec, folder / "sparse" / "0")
    return folder


# --------------------------------------------------------------------------------------------- normalisation


def test_sphere_normalisation_round_trip_is_exact_to_rounding():
    norm = BoundingSphere(CENTER, RADIUS)
    rng = np.random.default_rng(0)
    world = rng.normal(size=(1000, 3)) * 5 + CENTER
    back = norm.to_world(norm.to_unit(world))
    assert np.max(np.abs(back - world)) <= 4 * np.finfo(np.float64).eps * np.max(np.abs(world))
    assert np.allclose(norm.to_unit(CENTER + [RADIUS, 0, 0]), [1, 0, 0], atol=1e-15)
    scale, offset = norm.to_world_affine
    assert scale == RADIUS and offset == tuple(CENTER)
    assert BoundingSphere.from_json(norm.to_json()) == norm


def test_cameras_keep_their_rays_after_normalisation():
    """A world point and its normalised image are seen by the same pixel: normalisation moves no pixel."""
    norm = BoundingSphere(CENTER, RADIUS)
    c2w_world = _look_at(CENTER + [2.0, 0.3, 0.4], CENTER)
    c2w_unit = norm.c2w_to_unit(c2w_world)
    point_world = CENTER + np.array([0.1, -0.2, 0.05])
    project = lambda c2w, p: (np.linalg.inv(c2w) @ np.append(p, 1.0))[:3]
    a, b = project(c2w_world, point_world), project(c2w_unit, norm.to_unit(point_world))
    assert np.allclose(a[:2] / a[2], b[:2] / b[2], atol=1e-12)


def test_bad_sphere_values_are_refused():
    with pytest.raises(ValueError, match="sphere_radius"):
        BoundingSphere((0.0, 0.0, 0.0), 0.0)
    with pytest.raises(ValueError, match="sphere_center"):
        BoundingSphere((math.nan, 0.0, 0.0), 1.0)


def test_rays_use_pixel_centres_and_the_opencv_camera():
    c2w = torch.eye(4, dtype=torch.float64)[None]
    intrinsics = torch.tensor([[100.0, 100.0, 32.0, 24.0]], dtype=torch.float64)
    origins, dirs = camera_rays(c2w, intrinsics, torch.tensor([[32.0, 24.0]], dtype=torch.float64))
    assert torch.allclose(dirs, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    _, dirs = camera_rays(c2w, intrinsics, torch.tensor([[132.0, 24.0]], dtype=torch.float64))   # +x is right
    assert torch.allclose(dirs, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64) / math.sqrt(2))


def test_sphere_intersection_clamps_near_and_flags_misses():
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, 0.0], [0.0, 2.0, -3.0], [0.0, 0.0, 3.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0]] * 4)
    near, far, hit = intersect_unit_sphere(origins, dirs)
    assert hit.tolist() == [True, True, False, False]          # the last one has the sphere behind it
    assert torch.allclose(near[:2], torch.tensor([2.0, 0.0])) and torch.allclose(far[:2], torch.tensor([4.0, 1.0]))


# ------------------------------------------------------------------------------------------------ loading


def test_loads_a_colmap_workspace_normalised_and_downscaled(tmp_path):
    write_capture(tmp_path, views=6, size=(40, 30))
    data = load_dataset(tmp_path, sphere=SPHERE, downscale=2.0)
    assert len(data.views) == 6 and data.train == list(range(6)) and not data.validation_held_out
    view = data.views[0]
    assert (view.width, view.height) == (20, 15)
    assert view.intrinsics == pytest.approx((17.5, 17.5, 10.0, 7.5))
    assert np.linalg.norm(view.c2w[:3, 3]) == pytest.approx(3 * math.sqrt(1 + 0.09), rel=1e-9)
    assert not data.use_alpha


def test_holds_out_evenly_spaced_views_when_there_are_enough():
    train, validation, held = split_views(40)
    assert held and len(validation) == 4 and not set(train) & set(validation)
    assert len(train) + len(validation) == 40


@pytest.mark.parametrize("case, pattern", [
    ("missing", r"p03\.png: photo of image 4 is missing"),
    ("unreadable", r"p03\.png: cannot be read as an image"),
    ("wrong size", r"p03\.png: is 20x20 pixels but its camera 1 is 40x30"),
])
def test_photo_problems_are_named_before_training(tmp_path, case, pattern):
    write_capture(tmp_path)
    photo = tmp_path / "images" / "p03.png"
    if case == "missing":
        photo.unlink()
    elif case == "unreadable":
        photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    else:
        PILImage.new("RGB", (20, 20)).save(photo)
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(tmp_path, sphere=SPHERE)


def test_a_nan_pose_is_named(tmp_path):
    write_capture(tmp_path)
    images_bin = tmp_path / "sparse" / "0" / "images.bin"
    data = bytearray(images_bin.read_bytes())
    struct.pack_into("<d", data, 8 + 4 + 4 * 8, math.nan)        # image 1's tx
    images_bin.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"images\.bin.*p00\.png.*NaN"):
        load_dataset(tmp_path, sphere=SPHERE)


def test_a_distorted_camera_must_be_undistorted_first(tmp_path):
    write_capture(tmp_path, camera_model="OPENCV")
    with pytest.raises(DatasetError, match="undistort first"):
        load_dataset(tmp_path, sphere=SPHERE)


def test_a_sphere_no_camera_sees_is_refused(tmp_path):
    write_capture(tmp_path)
    far_away = BoundingSphere(CENTER + np.array([0.0, 0.0, 50.0]), 0.5)
    with pytest.raises(DatasetError, match=r"sphere_center .* no camera ray enters the bounding sphere"):
        load_dataset(tmp_path, sphere=far_away)


def test_a_tiny_sphere_in_the_middle_of_the_view_is_seen(tmp_path):
    """Smaller than the spacing of the test rays, but the ray through its centre finds it."""
    write_capture(tmp_path)
    data = load_dataset(tmp_path, sphere=BoundingSphere(CENTER, 0.01))
    assert len(data.views) == 6


def test_alpha_is_used_as_mask_only_when_every_photo_has_it(tmp_path):
    write_capture(tmp_path, rgba=True)
    assert load_dataset(tmp_path, sphere=SPHERE).use_alpha
    PILImage.new("RGB", (40, 30)).save(tmp_path / "images" / "p01.png")
    data = load_dataset(tmp_path, sphere=SPHERE)
    assert not data.use_alpha and any("alpha" in w for w in data.warnings)


@pytest.mark.parametrize("source, views", [("chair", 60),
                                           team_param("team-chair", 100, data="nerf_synthetic_chair")])
def test_reads_nerf_synthetic_transforms_with_alpha(tmp_path, source, views):
    """The bundled chair's RGBA renders in the NeRF-synthetic vocabulary, or the team's original."""
    chair = write_nerf_synthetic_chair(tmp_path).parent if source == "chair" else \
        shared_dataset("nerf_synthetic_chair")
    full_width = PILImage.open(chair / "train" / "r_0.png").width
    data = load_dataset(chair / "transforms_train.json", sphere=BoundingSphere(np.zeros(3), 1.5),
                        downscale=full_width / 64)
    assert len(data.views) == views and data.use_alpha and data.validation_held_out
    view = data.views[0]
    assert (view.width, view.height) == (64, 64)
    assert view.intrinsics[0] == pytest.approx(32.0 / math.tan(0.5 * 0.6911112070083618), rel=1e-6)


# ------------------------------------------------------------------------------------------------ photos


def _store(folder: Path, device_budget: int, host_budget: int, views: int = 8) -> tuple[ImageStore, list]:
    write_capture(folder, views=views, rgba=True)
    data = load_dataset(folder, sphere=SPHERE)
    return ImageStore(data.views, data.train, device="cpu", use_alpha=True, device_budget=device_budget,
                      host_budget=host_budget), data.views


def test_photos_fit_the_device_budget_and_give_exact_pixels(tmp_path):
    store, views = _store(tmp_path, device_budget=1 << 30, host_budget=1 << 30)
    assert store.mode == "device" and store.resident_bytes == 8 * 40 * 30 * 4
    batch = store.sample(500, torch.Generator().manual_seed(0))
    assert batch.rgb.shape == (500, 3) and batch.alpha.shape == (500,)
    assert torch.all((batch.pixels % 1) == 0.5)           # pixel centres
    for k in range(100):
        view = views[int(batch.view[k])]
        expected = np.asarray(PILImage.open(view.path).convert("RGBA"))[int(batch.pixels[k, 1]), int(batch.pixels[k, 0])]
        assert torch.allclose(batch.rgb[k], torch.tensor(expected[:3] / 255.0, dtype=torch.float32))
        assert float(batch.alpha[k]) == pytest.approx(expected[3] / 255.0)


def test_photos_beyond_the_device_budget_stay_in_host_memory(tmp_path):
    store, _ = _store(tmp_path, device_budget=1000, host_budget=1 << 30)
    assert store.mode == "host" and store.resident.pixels.device.type == "cpu"


def test_photos_beyond_the_host_budget_are_streamed_and_all_used(tmp_path):
    photo = 40 * 30 * 4
    store, _ = _store(tmp_path, device_budget=0, host_budget=4 * photo, views=8)   # two photos per chunk
    try:
        assert store.mode == "stream"
        seen, generator = set(), torch.Generator().manual_seed(0)
        for _ in range(12 * MIN_BATCHES_PER_CHUNK):
            assert store.resident_bytes <= 2 * photo
            seen |= set(store.sample(16, generator).view.tolist())
            store._next.result()          # let the decoding thread finish so the test does not depend on timing
        assert seen == set(range(8))
    finally:
        store.close()


def test_a_photo_that_fails_to_decode_is_named(tmp_path):
    write_capture(tmp_path, views=3)
    data = load_dataset(tmp_path, sphere=SPHERE)
    data.views[1].path.write_bytes(data.views[1].path.read_bytes()[:60])     # header intact, pixels cut off
    with pytest.raises(DatasetError, match=r"p01\.png: cannot be decoded"):
        ImageStore(data.views, data.train, device="cpu", use_alpha=False, device_budget=1 << 30)
