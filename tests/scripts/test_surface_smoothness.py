"""benchmarks/surface_smoothness.py on surfaces whose figures are known in closed form: a plane found among
outliers, flat and tilted grids, and sinusoidal bumps whose slope angles are computed analytically."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from carrara.backend.mesh.export import write_ply
from carrara.shared.camera_convention import colmap_from_c2w_opencv
from carrara.shared.colmap import write_model
from carrara.shared.mesh_data import MeshData
from carrara.shared.reconstruction import Camera, Image, Points3D, Reconstruction
from engine_scenes import _look_at_c2w_opencv
from testkit import REPO_ROOT

_spec = importlib.util.spec_from_file_location("surface_smoothness", REPO_ROOT / "benchmarks" / "surface_smoothness.py")
ss = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ss          # dataclasses look their module up there
_spec.loader.exec_module(ss)

WAVELENGTH = 0.05
AMPLITUDE = 0.002          # slopes up to 2 pi a / L = 0.25, about 14 degrees
# a rotated, shifted frame: the figures must not depend on the plane being z = 0
FRAME_ROTATION = np.linalg.qr(np.array([[0.6, -0.3, 0.74], [0.5, 0.8, -0.1], [-0.62, 0.5, 0.6]]))[0]
FRAME_SHIFT = np.array([3.0, -2.0, 5.0])


def _world(local: np.ndarray) -> np.ndarray:
    return local @ FRAME_ROTATION.T + FRAME_SHIFT


def grid_mesh(cells: int, height=lambda x, y: 0.0 * x, x0: float = 0.0, size: float = 1.0):
    """A (cells x cells) square grid of triangles over [x0, x0 + size] x [0, size], lifted by ``height``, in the
    rotated frame."""
    t = np.linspace(0.0, size, cells + 1)
    x, y = np.meshgrid(t + x0, t, indexing="ij")
    vertices = np.stack([x.ravel(), y.ravel(), np.broadcast_to(height(x, y), x.shape).ravel()], axis=1)
    index = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b, c, d = (index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel(), index[:-1, 1:].ravel())
    return _world(vertices), np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def bumps(amplitude: float):
    return lambda x, y: amplitude * np.sin(2 * np.pi * x / WAVELENGTH)


def wall_points(count: int = 4000, seed: int = 1) -> np.ndarray:
    """Points spread over the flat square [0, 1]^2 of the rotated frame: the sparse points of a wall."""
    xy = np.random.default_rng(seed).uniform(0.0, 1.0, (count, 2))
    return _world(np.column_stack([xy, np.zeros(count)]))


def analytic_slope_angles(amplitude: float) -> tuple[float, float]:
    """Area-weighted mean and RMS angle (degrees) between z = a sin(2 pi x / L) and the plane z = 0."""
    x = np.linspace(0.0, WAVELENGTH, 200_001)
    slope = amplitude * 2 * np.pi / WAVELENGTH * np.cos(2 * np.pi * x / WAVELENGTH)
    angle, area = np.degrees(np.arctan(np.abs(slope))), np.sqrt(1 + slope ** 2)
    return float(angle @ area / area.sum()), float(np.sqrt(angle ** 2 @ area / area.sum()))


SETTINGS = ss.SmoothnessSettings(cell_size=1 / 16, band=0.05, radius=2 * WAVELENGTH)


def _figures(vertices, faces, settings=SETTINGS) -> dict:
    return ss.mesh_smoothness(vertices, faces, wall_points(), settings)


def test_ransac_recovers_a_plane_among_30_percent_outliers_and_repeats_itself():
    rng = np.random.default_rng(7)
    on_plane = wall_points(1400, seed=2) + rng.normal(0, 0.002, (1400, 3))
    outliers = FRAME_SHIFT + rng.uniform(-1.0, 1.0, (600, 3))
    points = np.concatenate([on_plane, outliers])
    fit = ss.dominant_plane(points, threshold=0.01, iterations=300, seed=3)
    true_normal = FRAME_ROTATION[:, 2]
    assert np.degrees(np.arccos(abs(fit.normal @ true_normal))) < 0.3
    assert abs(abs(fit.offset) - abs(true_normal @ FRAME_SHIFT)) < 0.002
    assert fit.inliers[:1400].mean() > 0.99 and fit.inliers[1400:].mean() < 0.05
    again = ss.dominant_plane(points, threshold=0.01, iterations=300, seed=3)
    assert np.array_equal(again.normal, fit.normal) and np.array_equal(again.inliers, fit.inliers)


def test_a_flat_grid_has_no_normal_variation():
    figures = _figures(*grid_mesh(100))
    assert figures["points_from"] == "colmap" and figures["faces"] > 10_000
    assert figures["coverage"] == pytest.approx(1.0, abs=0.02)
    for name in ("angle_mean_deg", "angle_rms_deg", "angle_p95_deg", "highpass_mean_deg"):
        assert figures[name] < 1e-3, name
    assert figures["distance_rms"] < 1e-6


def test_sinusoidal_bumps_give_their_analytic_slope_angles_and_bumpier_scores_worse():
    mean, rms = analytic_slope_angles(AMPLITUDE)
    vertices, faces = grid_mesh(400, bumps(AMPLITUDE))          # 20 triangles per wavelength
    figures = _figures(vertices, faces)
    assert figures["angle_mean_deg"] == pytest.approx(mean, rel=0.02)
    assert figures["angle_rms_deg"] == pytest.approx(rms, rel=0.02)
    # the radius spans two wavelengths: the neighbourhood's mean normal is close to the plane's
    assert figures["highpass_mean_deg"] == pytest.approx(mean, rel=0.05)
    assert figures["distance_rms"] == pytest.approx(AMPLITUDE / np.sqrt(2), rel=0.02)
    mixed = faces.copy()
    mixed[::2] = faces[::2, ::-1]                   # every other face facing away: the same figures
    flipped = _figures(vertices, mixed)
    assert all(flipped[k] == pytest.approx(figures[k], abs=1e-9) for k in ("angle_mean_deg", "highpass_mean_deg"))
    bumpier = _figures(*grid_mesh(400, bumps(2 * AMPLITUDE)))
    for name in ("angle_mean_deg", "angle_rms_deg", "angle_p95_deg", "highpass_mean_deg", "distance_rms"):
        assert bumpier[name] > 1.8 * figures[name], name


def test_angles_are_weighted_by_area_not_by_face_count():
    flat_v, flat_f = grid_mesh(20, size=0.5)                           # 800 large faces
    bumpy_v, bumpy_f = grid_mesh(200, bumps(AMPLITUDE), x0=0.5, size=0.5)   # 80,000 small ones, as much area
    figures = _figures(np.concatenate([flat_v, bumpy_v]), np.concatenate([flat_f, bumpy_f + len(flat_v)]))
    assert figures["angle_mean_deg"] == pytest.approx(0.5 * analytic_slope_angles(AMPLITUDE)[0], rel=0.05)


def test_a_tilted_flat_grid_shows_its_tilt_but_no_high_pass_variation():
    tilt = 0.05                                          # 2.86 degrees over the patch
    figures = _figures(*grid_mesh(100, lambda x, y: tilt * (x - 0.5)), replace(SETTINGS, band=0.1))
    assert figures["angle_mean_deg"] == pytest.approx(np.degrees(np.arctan(tilt)), rel=1e-3)
    assert figures["highpass_mean_deg"] < 1e-3


def test_faces_outside_the_band_or_the_patch_are_left_out():
    flat_v, flat_f = grid_mesh(100)
    above_v, above_f = grid_mesh(100, lambda x, y: 10 * SETTINGS.band + bumps(AMPLITUDE)(x, y))   # beyond the band
    beside_v, beside_f = grid_mesh(100, bumps(AMPLITUDE), x0=2.0)      # in the plane, where the wall has no points
    vertices = np.concatenate([flat_v, above_v, beside_v])
    faces = np.concatenate([flat_f, above_f + len(flat_v), beside_f + len(flat_v) + len(above_v)])
    alone, together = _figures(flat_v, flat_f), _figures(vertices, faces)
    assert together["faces"] == alone["faces"] and together["angle_p95_deg"] < 1e-3
    # the same pieces inside the band and the patch do count
    inside_v, _ = grid_mesh(100, lambda x, y: 0.5 * SETTINGS.band + bumps(AMPLITUDE)(x, y))
    counted = _figures(np.concatenate([flat_v, inside_v]), np.concatenate([flat_f, flat_f + len(flat_v)]))
    assert counted["faces"] == 2 * alone["faces"] and counted["angle_mean_deg"] > 4.0


def test_a_wall_rebuilt_in_front_of_itself_is_found_by_its_offset_not_its_angles():
    shift = 6 * SETTINGS.band
    flat = _figures(*grid_mesh(100))
    assert flat["empty_cells"] == 0.0 and flat["offset_p90"] < 1e-9
    displaced = _figures(*grid_mesh(100, lambda x, y: shift + 0.0 * x))
    assert displaced["angle_mean_deg"] is None and displaced["coverage"] == 0.0
    assert displaced["empty_cells"] == 0.0
    assert displaced["offset_median"] == pytest.approx(shift) and displaced["offset_p90"] == pytest.approx(shift)
    assert "0 % of cells empty, offset median 0.3" in ss.summary(displaced)
    # a quarter of the wall in place, the rest missing: the angles see a flat quarter, the cells say what is absent
    half = _figures(*grid_mesh(50, size=0.5))
    assert half["angle_mean_deg"] < 1e-3 and half["coverage"] < ss.LOW_COVERAGE
    assert half["empty_cells"] == pytest.approx(1 - half["coverage"], abs=0.1)
    assert "the angles describe only" in ss.summary(half) and "the angles describe only" not in ss.summary(flat)


def test_the_patch_leaves_out_a_relief_and_the_edges_and_keeps_the_wall_around_them():
    points = wall_points(20_000)
    local = (points - FRAME_SHIFT) @ FRAME_ROTATION
    relief = np.max(np.abs(local[:, :2] - 0.5), axis=1) < 0.15
    local[relief, 2] = 0.3                               # a block standing 0.3 out of the wall
    plane, patch, used = ss.flat_region(_world(local), ss.SmoothnessSettings(cell_size=0.04))
    centres = np.stack(np.meshgrid(np.linspace(0.01, 0.99, 99), np.linspace(0.01, 0.99, 99)), -1).reshape(-1, 2)
    inside = patch.contains(_world(np.column_stack([centres, np.zeros(len(centres))])))
    distance_to_block = np.max(np.abs(centres - 0.5), axis=1) - 0.15
    border = np.min(np.column_stack([centres, 1 - centres]), axis=1)
    assert plane.inliers[~relief].all() and not plane.inliers[relief].any()
    assert not inside[distance_to_block < -1e-9].any()
    # the grid is not aligned with the block: a cell is kept when none of its 8 neighbours is empty, so what
    # lies 3 cells from the block and the edges is kept, and the cells along them are not
    kept = (distance_to_block > 3 * used.cell_size) & (border > 3 * used.cell_size)
    assert inside[kept].all()
    along = np.minimum(distance_to_block, border) < 0.5 * used.cell_size
    assert inside[along & (distance_to_block > 0)].mean() < 0.1


def _colmap_workspace(folder: Path, points: np.ndarray) -> Path:
    """A COLMAP model of four cameras looking at the wall, with its sparse points (written by the shared writer)."""
    target = _world(np.array([0.5, 0.5, 0.0]))
    images = {}
    for k, (dx, dy) in enumerate([(-0.6, -0.6), (0.6, -0.6), (0.6, 0.6), (-0.6, 0.6)], start=1):
        eye = _world(np.array([0.5 + dx, 0.5 + dy, 2.5]))
        qvec, tvec = colmap_from_c2w_opencv(_look_at_c2w_opencv(eye, target))
        images[k] = Image(k, f"view_{k}.png", 1, qvec, tvec)
    count = len(points)
    cloud = Points3D(np.arange(1, count + 1), points, np.zeros((count, 3), np.uint8), np.zeros(count),
                     np.zeros(count + 1, np.int64))
    write_model(Reconstruction({1: Camera(1, "PINHOLE", 64, 64, np.array([50.0, 50.0, 32.0, 32.0]))}, images,
                               cloud), folder / "sparse" / "0")
    return folder


@pytest.mark.parametrize("points_from", ["colmap", "mesh"])
def test_the_command_measures_a_ply_and_writes_its_figures(tmp_path, points_from):
    vertices, faces = grid_mesh(400, bumps(AMPLITUDE))
    write_ply(MeshData(vertices.astype(np.float32), faces.astype(np.int32)), tmp_path / "wall.ply")
    dataset = _colmap_workspace(tmp_path / "capture", wall_points())
    env = {**{k: v for k, v in os.environ.items() if k != "OUT"}, "CARRARA_RESULTS_DIR": str(tmp_path / "results")}
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "surface_smoothness.py"), "--mesh",
               str(tmp_path / "wall.ply"), "--dataset", str(dataset), "--points-from", points_from,
               "--band", "0.05", "--radius", str(2 * WAVELENGTH)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "smoothness_wall.json").read_text())
    assert result["points_from"] == points_from and result["git_commit"]
    assert result["angle_mean_deg"] == pytest.approx(analytic_slope_angles(AMPLITUDE)[0], rel=0.03)
    assert result["settings"]["band"] == 0.05 and f"points from {points_from}" in done.stdout
