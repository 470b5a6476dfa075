"""Which bounding-sphere rule holds on real captures: Neuralangelo's two, BlenderNeuralangelo's, and ours.

Data (../shared/data): the NeRF-synthetic chair (exact cameras; ground truth = the visual hull carved from its 100
alpha masks), the Strecha fountain (measured cameras, triangulated points), instant-ngp's fox (cameras only) and
Bundler's kermit (its bundle.out: 11 cameras, 634 points). For each rule: how much of the object / the points the
sphere holds, how many cameras it swallows, and how far 1% of stray points (a far-off cloud, as SfM leaves) moves it.

    .venv/bin/python benchmarks/compare_sphere_rules.py

Writes benchmarks/results/sphere_rules.json and top-view figures in docs/bounding-sphere/.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image as PilImage, ImageDraw

from carrara.shared import colmap, sphere as sp
from carrara.shared.camera_convention import qvec_to_rotmat, rotmat_to_qvec, up_direction_from_cameras
from carrara.shared.camera_models import pinhole_intrinsics
from carrara.shared.reconstruction import Camera, Image, Points3D, Reconstruction
from carrara.shared.transforms_json import read_transforms

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CARRARA_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results" / "sphere_rules.json"
FIGURES = REPO / "docs" / "bounding-sphere"
STRAY_FRACTION = 0.01
COLOURS = {"neuralangelo_pose": (220, 60, 60), "neuralangelo_points": (230, 150, 30),
           "max_distance": (150, 60, 200), "carrara_view": (40, 150, 220), "carrara_object": (20, 160, 60),
           "carrara_outdoor": (20, 110, 110), "carrara_indoor": (100, 100, 100)}


def rules(rec: Reconstruction) -> dict[str, sp.BoundingSphere]:
    centers, axes = sp.camera_axes(rec)
    out = {"neuralangelo_pose": sp.sphere_from_poses_neuralangelo(centers, axes),
           "carrara_view": sp.fit_sphere_to_camera_views(rec)}
    if len(rec.points):
        out["neuralangelo_points"] = sp.sphere_from_points_neuralangelo(rec.points.xyz)
        out["max_distance"] = sp.sphere_max_distance(rec.points.xyz)
    for scene_type in ("object", "outdoor", "indoor"):
        out[f"carrara_{scene_type}"] = sp.estimate_sphere(rec, scene_type)
    return out


def with_strays(rec: Reconstruction, seed: int = 0) -> Reconstruction:
    """The same capture plus 1% stray points scattered in a box ten times the points' robust size."""
    rng = np.random.default_rng(seed)
    core = sp.fit_sphere_to_points(rec.points.xyz)
    count = max(1, int(STRAY_FRACTION * len(rec.points)))
    strays = core.center + rng.uniform(-10, 10, size=(count, 3)) * core.radius
    xyz = np.concatenate([rec.points.xyz, strays])
    n = len(xyz)
    lengths = np.concatenate([np.diff(rec.points.track_offsets), np.full(count, 3)])
    points = Points3D(np.arange(1, n + 1), xyz, np.zeros((n, 3), np.uint8), np.zeros(n),
                      np.concatenate([[0], np.cumsum(lengths)]), np.ones(lengths.sum(), np.int64),
                      np.zeros(lengths.sum(), np.int64))
    return Reconstruction(rec.cameras, rec.images, points)


def measure(rec: Reconstruction, spheres: dict, hull: np.ndarray | None = None) -> dict:
    centers, _ = sp.camera_axes(rec)
    strays = rules(with_strays(rec)) if len(rec.points) else {}
    ideal = sp.minimal_enclosing_sphere(hull) if hull is not None else None
    table = {}
    for name, sphere in spheres.items():
        row = {"center": np.round(sphere.center, 4).tolist(), "radius": round(sphere.radius, 4),
               "cameras_inside": f"{int(sphere.contains(centers).sum())}/{len(centers)}"}
        if len(rec.points):
            row["points_inside"] = round(float(sphere.contains(rec.points.xyz).mean()), 3)
            row["radius_growth_with_1pct_strays"] = round(strays[name].radius / sphere.radius, 2)
        if hull is not None:
            row["object_inside"] = round(float(sphere.contains(hull).mean()), 3)
            row["radius_vs_smallest_holding_object"] = round(sphere.radius / ideal.radius, 2)
        table[name] = row
    return table


# ------------------------------------------------------------------------------------------------- datasets


def chair():
    root = DATA / "nerf_synthetic_chair"
    rec, _ = read_transforms(root / "transforms_train.json")
    return rec, visual_hull(rec)


def visual_hull(rec: Reconstruction, cells: int = 72, half: float = 1.5) -> np.ndarray:
    """Centres of the voxels inside every alpha mask: the object's shape as its photos bound it."""
    axis = (np.arange(cells) + 0.5) / cells * 2 * half - half
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    inside = np.ones(len(grid), bool)
    for image in rec.images.values():
        camera = rec.cameras[image.camera_id]
        fx, fy, cx, cy = pinhole_intrinsics(camera.model, camera.params)
        alpha = np.asarray(PilImage.open(rec.images_dir / image.name))[..., 3] > 127
        cam = grid[inside] @ qvec_to_rotmat(image.qvec).T + image.tvec
        u = np.floor(fx * cam[:, 0] / cam[:, 2] + cx).astype(int)
        v = np.floor(fy * cam[:, 1] / cam[:, 2] + cy).astype(int)
        seen = (cam[:, 2] > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        keep = np.zeros(len(u), bool)
        keep[seen] = alpha[v[seen], u[seen]]
        inside[np.nonzero(inside)[0]] = keep
    return grid[inside]


def fountain():
    return colmap.read_model(DATA / "strecha_fountain_p11" / "colmap_gt_poses" / "sparse" / "0"), None


def fox():
    rec, _ = read_transforms(DATA / "instant_ngp_fox")
    return rec, None


def kermit():
    """Bundler v0.3: cameras look down -z with y up, so COLMAP's pose is diag(1,-1,-1) applied to (R, t)."""
    lines = [line for line in (DATA / "bundler_kermit" / "bundler_result" / "bundle.out").read_text().splitlines()
             if not line.startswith("#")]
    num_cameras, num_points = map(int, lines[0].split())
    values = lambda i: np.array(lines[i].split(), float)  # noqa: E731
    flip = np.diag([1.0, -1.0, -1.0])
    cameras, images = {}, {}
    for c in range(num_cameras):
        base = 1 + 5 * c
        f = values(base)[0]
        if f == 0:
            continue
        rot = flip @ np.stack([values(base + 1), values(base + 2), values(base + 3)])
        cameras[c + 1] = Camera(c + 1, "SIMPLE_PINHOLE", 640, 480, np.array([f, 320.0, 240.0]))
        images[c + 1] = Image(c + 1, f"kermit{c:03d}.jpg", c + 1, rotmat_to_qvec(rot), flip @ values(base + 4))
    base = 1 + 5 * num_cameras
    xyz, rgb, tracks = [], [], []
    for p in range(num_points):
        xyz.append(values(base + 3 * p))
        rgb.append(values(base + 3 * p + 1))
        views = values(base + 3 * p + 2)
        tracks.append(views[1::4].astype(int) + 1)
    lengths = np.array([len(t) for t in tracks])
    points = Points3D(np.arange(1, num_points + 1), np.array(xyz), np.array(rgb, np.uint8), np.zeros(num_points),
                      np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(tracks),
                      np.zeros(lengths.sum(), np.int64))
    return Reconstruction(cameras, images, points), None


# ------------------------------------------------------------------------------------------------- figures


def top_view(name: str, rec: Reconstruction, spheres: dict, hull: np.ndarray | None, size: int = 560) -> None:
    """Points, cameras and each rule's sphere seen from above (along the cameras' mean up)."""
    up = up_direction_from_cameras(np.array([im.qvec for im in rec.images.values()]))
    e1 = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    to2d = lambda p: np.asarray(p) @ np.stack([e1, e2]).T  # noqa: E731
    centers, _ = sp.camera_axes(rec)
    cloud = hull if hull is not None else rec.points.xyz
    # Frame the cameras, the points and our spheres; the other rules' spheres may run off the picture.
    framed = [centers] + ([cloud] if len(cloud) else [])
    framed += [s.center + s.radius * np.concatenate([e1[None], -e1[None], e2[None], -e2[None]])
               for rule, s in spheres.items() if rule.startswith("carrara_") and rule != "carrara_indoor"]
    extent_sphere = sp.fit_sphere_to_points(np.concatenate(framed), 1.0)
    middle, span = to2d(extent_sphere.center), extent_sphere.radius * 1.1
    pixel = lambda q: ((q - middle) / span * 0.5 + 0.5) * size  # noqa: E731
    plot = PilImage.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(plot)
    if len(cloud):
        sample = cloud[:: max(1, len(cloud) // 20000)]
        for x, y in pixel(to2d(sample)):
            draw.point((x, y), fill=(170, 170, 170))
    for x, y in pixel(to2d(centers)):
        draw.rectangle((x - 3, y - 3, x + 3, y + 3), outline=(0, 0, 0))
    canvas = PilImage.new("RGB", (size, size + 20 * len(spheres)), "white")
    legend = ImageDraw.Draw(canvas)
    for row, (rule, sphere) in enumerate(spheres.items()):
        (cx, cy), r = pixel(to2d(sphere.center)), sphere.radius / span * 0.5 * size
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=COLOURS[rule], width=2)
        legend.text((10, size + 4 + 20 * row), f"{rule}: r = {sphere.radius:.3g}", fill=COLOURS[rule])
    canvas.paste(plot, (0, 0))
    legend.line((0, size, size, size), fill=(0, 0, 0))
    FIGURES.mkdir(parents=True, exist_ok=True)
    canvas.save(FIGURES / f"{name}.png", optimize=True)


def main() -> None:
    results = {}
    for name, load in (("chair", chair), ("fountain", fountain), ("fox", fox), ("kermit", kermit)):
        started = time.perf_counter()
        rec, hull = load()
        spheres = rules(rec)
        results[name] = {"images": len(rec.images), "points": len(rec.points),
                         "hull_voxels": None if hull is None else len(hull), "rules": measure(rec, spheres, hull)}
        top_view(name, rec, spheres, hull)
        print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "sphere_rules", "datasets": results,
                                   "settings": {"stray_fraction": STRAY_FRACTION, "hull_cells": 72},
                                   "git_commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S")},
                                  indent=2) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
