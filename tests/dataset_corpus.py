"""Bad (and good) datasets made in a temporary folder: the corpus the dataset check and training must agree on.

Each maker takes an empty folder, writes a dataset into it (a small pycolmap workspace from ``testkit``, then one
fault), and returns the path to hand to the check and the loader plus a fragment the verdict's message must hold
(None: the dataset trains).
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from carrara.shared.colmap import read_model, write_model
from carrara.shared.sphere import BoundingSphere
from carrara.shared.transforms_json import write_transforms
from testkit import write_colmap_dataset

#: Every camera of ``write_colmap_dataset`` sits at (0, 0, -4) looking at the origin: this sphere is in view.
SPHERE = BoundingSphere(np.zeros(3), 1.0)
PHOTOS = 3


def _workspace(folder: Path, count: int = PHOTOS) -> Path:
    return write_colmap_dataset(folder, count)


def _edit_model(folder: Path, edit) -> Path:
    model = folder / "sparse" / "0"
    rec = read_model(model)
    edit(rec)
    write_model(rec, model)
    return folder


def _set_params(params: list[float]):
    def edit(rec):
        rec.cameras[1].params = np.array(params, np.float64)
    return edit


def _rename_first(name: str):
    def edit(rec):
        rec.images[1].name = name
    return edit


def _outside_photo(folder: Path) -> Path:
    """A real photo of the right size outside the dataset: confinement, not absence, must refuse it."""
    outside = folder.parent / f"{folder.name}_outside.png"
    PILImage.new("RGB", (64, 48), (1, 2, 3)).save(outside)
    return outside


def ok(folder: Path):
    return _workspace(folder), None


def distortion(folder: Path):
    model = _workspace(folder) / "sparse" / "0"
    rec = read_model(model)
    rec.cameras[1].model = "OPENCV"
    rec.cameras[1].params = np.array([64.0, 64.0, 32.0, 24.0, 0.05, 0.0, 0.0, 0.0])
    write_model(rec, model)
    return folder, "camera 1 (OPENCV) has lens distortion; training needs undistorted PINHOLE-type photos"


def focal_zero(folder: Path):
    return _edit_model(_workspace(folder), _set_params([0.0, 0.0, 32.0, 24.0])), "has focal length fx=0, fy=0"


def focal_negative(folder: Path):
    return (_edit_model(_workspace(folder), _set_params([-500.0, -500.0, 32.0, 24.0])),
            "has focal length fx=-500, fy=-500")


def principal_point_far_out(folder: Path):
    return (_edit_model(_workspace(folder), _set_params([64.0, 64.0, 3200.0, 24.0])),
            "principal point at (3200, 24), far outside its 64x48 image")


def nan_pose(folder: Path):
    images_bin = _workspace(folder) / "sparse" / "0" / "images.bin"
    data = bytearray(images_bin.read_bytes())
    struct.pack_into("<d", data, 8 + 4 + 4 * 8, math.nan)        # image 1's tx
    images_bin.write_bytes(bytes(data))
    return folder, "has a NaN or infinite pose"


def scaled_rotation(folder: Path):
    def edit(rec):
        rec.images[2].qvec = rec.images[2].qvec * 1.2
    return _edit_model(_workspace(folder), edit), "rotation quaternion of length 1.2: not a rotation"


def missing_photo(folder: Path):
    (_workspace(folder) / "images" / "img_002.png").unlink()
    return folder, "img_002.png: photo of image 2 is missing"


def wrong_size_photo(folder: Path):
    photo = _workspace(folder) / "images" / "img_003.png"
    photo.unlink()                                   # a hard link of the others: replace, do not overwrite
    PILImage.new("RGB", (32, 24)).save(photo)
    return folder, "img_003.png: is 32x24 pixels but its camera 1 is 64x48"


def truncated_photo(folder: Path):
    photo = _workspace(folder) / "images" / "img_003.png"
    data = photo.read_bytes()
    photo.unlink()
    photo.write_bytes(data[:60])
    return folder, "img_003.png: cannot be read as an image"


def parent_name(folder: Path):
    _workspace(folder)
    outside = _outside_photo(folder)
    return (_edit_model(folder, _rename_first(f"../../{outside.name}")),
            f"image 1's name '../../{outside.name}' leads to {outside.resolve()}, outside where the photos may be")


def absolute_name(folder: Path):
    _workspace(folder)
    outside = _outside_photo(folder)
    return (_edit_model(folder, _rename_first(str(outside))),
            f"image 1's name '{outside}' leads to {outside.resolve()}, outside")


def symlink_escape(folder: Path):
    photo = _workspace(folder) / "images" / "img_001.png"
    photo.unlink()
    os.symlink(_outside_photo(folder), photo)
    return folder, "image 1's name 'img_001.png' leads to"


def corrupt_cameras_bin(folder: Path):
    (_workspace(folder) / "sparse" / "0" / "cameras.bin").write_bytes(b"\x07garbage")
    return folder, "does not read as a dataset: "


def empty_folder(folder: Path):
    folder.mkdir(parents=True)
    return folder, "no COLMAP model found"


def one_photo(folder: Path):
    def edit(rec):
        rec.images = {1: rec.images[1]}
    return _edit_model(_workspace(folder), edit), "1 photo(s): training needs at least 2 photos"


def colmap_beside_broken_transforms(folder: Path):
    """Both present: the COLMAP model is read (and trains), the transforms.json is named as unused."""
    _workspace(folder)
    (folder / "transforms.json").write_text('{"frames": "not even a list"}')
    return folder, None


def transforms_json(folder: Path):
    _workspace(folder)
    write_transforms(folder / "transforms.json", read_model(folder / "sparse" / "0"), SPHERE)
    return folder / "transforms.json", None


def transforms_parent_file_path(folder: Path):
    _workspace(folder)
    outside = _outside_photo(folder)
    write_transforms(folder / "transforms.json", read_model(folder / "sparse" / "0"), SPHERE)
    meta = json.loads((folder / "transforms.json").read_text())
    meta["frames"][0]["file_path"] = f"../{outside.name}"
    (folder / "transforms.json").write_text(json.dumps(meta))
    return folder / "transforms.json", f"file_path '../{outside.name}' leads to {outside.resolve()}, outside"


def transforms_focal_zero(folder: Path):
    path, _ = transforms_json(folder)
    meta = json.loads(path.read_text())
    meta["fl_x"] = meta["fl_y"] = 0.0
    path.write_text(json.dumps(meta))
    return path, "focal lengths and image size must be positive"


CORPUS = [ok, distortion, focal_zero, focal_negative, principal_point_far_out, nan_pose, scaled_rotation,
          missing_photo, wrong_size_photo, truncated_photo, parent_name, absolute_name, symlink_escape,
          corrupt_cameras_bin, empty_folder, one_photo, colmap_beside_broken_transforms, transforms_json,
          transforms_parent_file_path, transforms_focal_zero]
