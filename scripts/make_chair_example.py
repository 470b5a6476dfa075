"""Build the bundled example, examples/chair/, from the CC-0 NeRF-synthetic chair: a COLMAP model like any user's.

The chair's cameras are the renderer's own, so they are written exactly (a PINHOLE camera and the converted poses)
and only the sparse points are computed: SIFT on the renders, exhaustive matching, then triangulation with the poses
held fixed (``pycolmap.triangulate_points``). A dev script: run it once, commit its output.

    .venv/bin/python scripts/make_chair_example.py [--source ../shared/data/nerf_synthetic_chair] [--out examples/chair]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image, ImageFilter

from carrara.shared.camera_convention import colmap_from_c2w_opengl, qvec_to_rotmat

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "nerf_synthetic_chair"
DEFAULT_OUT = REPO_ROOT / "examples" / "chair"

# SIFT sees the renders composited on mid grey: the chair is cream and white, so a white (or black) background would
# hide part of its outline or make every silhouette edge a strong, view-dependent "feature".
SIFT_BACKGROUND = 128
# Keypoints within this many pixels of the silhouette are masked out: a silhouette corner is not a point on the chair.
SILHOUETTE_MARGIN_PX = 3
# A triangulated point on the chair projects inside the silhouette in every view; one pixel of slack for rounding.
HULL_SLACK_PX = 1


def choose_views(c2w_opengl: np.ndarray, count: int) -> list[int]:
    """Frame indices spread evenly over the viewing directions (farthest-point sampling from frame 0)."""
    directions = c2w_opengl[:, :3, 3] / np.linalg.norm(c2w_opengl[:, :3, 3], axis=1, keepdims=True)
    chosen = [0]
    nearest = np.linalg.norm(directions - directions[0], axis=1)
    while len(chosen) < min(count, len(directions)):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(directions - directions[pick], axis=1))
    return sorted(chosen)


def load_frames(source: Path) -> tuple[float, list[str], np.ndarray]:
    """camera_angle_x (rad), the image file names and the (N, 4, 4) OpenGL camera->world matrices."""
    meta = json.loads((source / "transforms_train.json").read_text())
    names = [Path(frame["file_path"]).name + ".png" for frame in meta["frames"]]
    c2w = np.array([frame["transform_matrix"] for frame in meta["frames"]], np.float64)
    return float(meta["camera_angle_x"]), names, c2w


def write_sift_inputs(rgba_paths: list[Path], image_dir: Path, mask_dir: Path) -> None:
    """Grey-composited copies for SIFT and eroded alpha masks in COLMAP's layout (``<image name>.png``, 0 = ignore)."""
    for path in rgba_paths:
        rgba = Image.open(path).convert("RGBA")
        background = Image.new("RGBA", rgba.size, (SIFT_BACKGROUND,) * 3 + (255,))
        Image.alpha_composite(background, rgba).convert("RGB").save(image_dir / path.name)
        alpha = rgba.getchannel("A").point(lambda a: 255 if a >= 128 else 0)
        alpha.filter(ImageFilter.MinFilter(2 * SILHOUETTE_MARGIN_PX + 1)).save(mask_dir / f"{path.name}.png")


def posed_reconstruction(database: Path, camera: pycolmap.Camera, poses: dict[str, tuple[np.ndarray, np.ndarray]]
                         ) -> pycolmap.Reconstruction:
    """A reconstruction with the database's image ids and our exact poses, and no points yet."""
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(camera)
    with pycolmap.Database.open(database) as db:
        for db_image in db.read_all_images():
            qvec, tvec = poses[db_image.name]
            image = pycolmap.Image(name=db_image.name, camera_id=camera.camera_id, image_id=db_image.image_id)
            cam_from_world = pycolmap.Rigid3d(np.hstack([qvec_to_rotmat(qvec), tvec[:, None]]))
            rec.add_image_with_trivial_frame(image, cam_from_world)
    return rec


def outside_visual_hull(rec: pycolmap.Reconstruction, alpha_by_name: dict[str, np.ndarray]) -> list[int]:
    """Ids of points that project onto the background of some view: they cannot lie on the chair."""
    ids = np.array(sorted(rec.points3D), np.int64)
    xyz = np.array([rec.points3D[i].xyz for i in ids])
    outside = np.zeros(len(ids), bool)
    camera = next(iter(rec.cameras.values()))
    for image in rec.images.values():
        hull = alpha_by_name[image.name]
        pose = image.cam_from_world()
        cam = xyz @ pose.rotation.matrix().T + pose.translation
        pix = np.asarray(camera.img_from_cam(cam))
        col, row = np.floor(pix[:, 0]).astype(int), np.floor(pix[:, 1]).astype(int)
        inside_frame = (cam[:, 2] > 0) & (col >= 0) & (row >= 0) & (col < hull.shape[1]) & (row < hull.shape[0])
        outside[inside_frame] |= ~hull[row[inside_frame], col[inside_frame]]
    return ids[outside].tolist()


def dilated_masks(rgba_paths: list[Path]) -> dict[str, np.ndarray]:
    """Boolean silhouettes, grown by HULL_SLACK_PX, keyed by image name."""
    masks = {}
    for path in rgba_paths:
        alpha = Image.open(path).getchannel("A").filter(ImageFilter.MaxFilter(2 * HULL_SLACK_PX + 1))
        masks[path.name] = np.asarray(alpha) > 0
    return masks


def make_example(source: Path, out: Path, views: int) -> dict:
    """Write ``out/images/*.png`` and ``out/sparse/0``; return a summary of what was made."""
    fov_x, names, c2w = load_frames(source)
    chosen = choose_views(c2w, views)
    rgba_paths = [source / "train" / names[i] for i in chosen]
    width, height = Image.open(rgba_paths[0]).size
    focal = 0.5 * width / math.tan(0.5 * fov_x)
    # The renders are ideal pinholes centred on the image; COLMAP's image spans 0..W, so the centre is W/2 exactly.
    camera = pycolmap.Camera(camera_id=1, model="PINHOLE", width=width, height=height,
                             params=[focal, focal, width / 2.0, height / 2.0])
    qvecs, tvecs = colmap_from_c2w_opengl(c2w[chosen])
    poses = {path.name: (q, t) for path, q, t in zip(rgba_paths, qvecs, tvecs)}

    with tempfile.TemporaryDirectory(prefix="carrara-chair-") as tmp:
        work = Path(tmp)
        sift_images, masks, triangulated = work / "images", work / "masks", work / "sparse"
        for folder in (sift_images, masks, triangulated):
            folder.mkdir()
        write_sift_inputs(rgba_paths, sift_images, masks)
        database = work / "database.db"
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "PINHOLE"
        reader.camera_params = ",".join(repr(p) for p in camera.params)
        reader.mask_path = str(masks)
        pycolmap.extract_features(database, sift_images, camera_mode=pycolmap.CameraMode.SINGLE,
                                  reader_options=reader, device=pycolmap.Device.cpu)
        pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
        rec = posed_reconstruction(database, camera, poses)
        rec = pycolmap.triangulate_points(rec, database, sift_images, triangulated)

    triangulated_count = rec.num_points3D()
    for point_id in outside_visual_hull(rec, dilated_masks(rgba_paths)):
        rec.delete_point3D(point_id)

    if out.exists():
        shutil.rmtree(out / "images", ignore_errors=True)
        shutil.rmtree(out / "sparse", ignore_errors=True)
    (out / "images").mkdir(parents=True)
    (out / "sparse" / "0").mkdir(parents=True)
    for path in rgba_paths:
        shutil.copyfile(path, out / "images" / path.name)  # byte for byte: RGBA, alpha is the object mask
    rec.write_binary(str(out / "sparse" / "0"))
    return {
        "views": len(chosen),
        "points_triangulated": triangulated_count,
        "points_kept": rec.num_points3D(),
        "mean_reprojection_error_px": rec.compute_mean_reprojection_error(),
        "mean_track_length": rec.compute_mean_track_length(),
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the nerf_synthetic_chair folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the example is written")
    parser.add_argument("--views", type=int, default=60, help="how many of the 100 renders to keep")
    args = parser.parse_args(argv)
    if not (args.source / "transforms_train.json").is_file():
        parser.error(f"{args.source}: no transforms_train.json (point --source at the nerf_synthetic_chair folder)")
    summary = make_example(args.source, args.out, args.views)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
