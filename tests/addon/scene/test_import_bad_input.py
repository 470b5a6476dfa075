"""Every bad input: a clear error naming the file and the problem, and the .blend exactly as it was."""
import shutil

import bpy
import numpy as np
import pycolmap
import pytest

from carrara.shared import colmap
from carrara.shared.reconstruction import Points3D
from colmap_models import synthetic_model, write_pycolmap

_DATA_KINDS = ("objects", "meshes", "cameras", "collections", "materials", "node_groups", "images", "actions")


@pytest.fixture
def scene(registered_addon, tmp_path):
    """A scene with the artist's own cube and a first, successful import already in it."""
    bpy.ops.mesh.primitive_cube_add()
    first = write_pycolmap(synthetic_model("PINHOLE", points=20), tmp_path / "first")
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(first)) == {"FINISHED"}
    return bpy.context.scene


def snapshot(scene):
    data = {kind: sorted(d.name for d in getattr(bpy.data, kind)) for kind in _DATA_KINDS}
    props = scene.carrara.reconstruction
    values = {name: getattr(props, name) for name in props.bl_rna.properties.keys() if name != "rna_type"}
    values = {k: tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for k, v in values.items()}
    children = sorted(c.name for c in scene.collection.children)
    return data, values, children, len(scene.collection.all_objects)


def fails_cleanly(scene, path, *fragments, **options):
    before = snapshot(scene)
    with pytest.raises(RuntimeError) as caught:  # Blender raises the operator's ERROR report for Python callers
        bpy.ops.import_scene.carrara_colmap(filepath=str(path), **options)
    for fragment in fragments:
        assert str(fragment) in str(caught.value), str(caught.value)
    assert snapshot(scene) == before


@pytest.fixture
def model(tmp_path):
    return write_pycolmap(synthetic_model("PINHOLE", rigs=2, points=30), tmp_path / "model")


def test_missing_folder(scene, tmp_path):
    fails_cleanly(scene, tmp_path / "nowhere", "nowhere", "no such file")


def test_folder_without_a_model(scene, tmp_path):
    (tmp_path / "empty").mkdir()
    fails_cleanly(scene, tmp_path / "empty", "empty", "no COLMAP model")


def test_missing_file(scene, model):
    (model / "points3D.bin").unlink()
    fails_cleanly(scene, model, "points3D.bin", "missing")


def test_truncated_binary(scene, model):
    data = (model / "images.bin").read_bytes()
    (model / "images.bin").write_bytes(data[: len(data) // 2])
    fails_cleanly(scene, model, "images.bin", "truncated")


def test_unknown_camera_model_id(scene, model):
    data = bytearray((model / "cameras.bin").read_bytes())
    data[12:16] = (77).to_bytes(4, "little")
    (model / "cameras.bin").write_bytes(bytes(data))
    fails_cleanly(scene, model, "cameras.bin", "unknown camera model id 77")


def test_image_naming_a_missing_camera(scene, model):
    rec = colmap.read_model(model)
    del rec.cameras[max(rec.cameras)]
    colmap.write_model(rec, model)
    fails_cleanly(scene, model, "images.bin", "names camera", "does not define")


def test_point_naming_a_missing_image(scene, model):
    rec = colmap.read_model(model)
    rec.points.track_image_ids[0] = 4242
    colmap.write_model(rec, model)
    fails_cleanly(scene, model, "points3D.bin", "image 4242")


def test_nan_and_infinite_values(scene, model):
    rec = colmap.read_model(model)
    rec.points.xyz[7] = np.nan
    colmap.write_model(rec, model)
    fails_cleanly(scene, model, "points3D.bin", "NaN or infinite")


def test_empty_model(scene, model):
    rec = colmap.read_model(model)
    rec.images, rec.points = {}, Points3D()
    colmap.write_model(rec, model)
    fails_cleanly(scene, model, "images.bin", "empty")


def test_unreadable_file(scene, model, tmp_path):
    shutil.move(model / "cameras.bin", tmp_path / "aside.bin")
    (model / "cameras.bin").mkdir()
    fails_cleanly(scene, model, "cameras.bin", "cannot read")


def test_bad_transforms_json(scene, tmp_path):
    (tmp_path / "transforms.json").write_text('{"frames": 3}')
    fails_cleanly(scene, tmp_path / "transforms.json", "transforms.json", "'frames'")


def test_failure_half_way_through_the_build_removes_everything_it_made(scene, tmp_path):
    """Photos of two sizes cannot share one animated camera: found after the points and sphere were built."""
    ref = synthetic_model("PINHOLE", rigs=2, points=30)
    camera = next(iter(ref.cameras.values()))
    camera.width, camera.height = 800, 600
    folder = write_pycolmap(ref, tmp_path / "mixed")
    assert len(pycolmap.Reconstruction(str(folder)).cameras) == 2  # a valid model: only the mode is wrong for it
    fails_cleanly(scene, folder, "mixed", "one animated camera needs one photo size", camera_mode="ANIMATED")
