"""COLMAP into Blender, exactly: Blender's own cameras reproject COLMAP's points where COLMAP does."""
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
import pycolmap
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from carrara.addon.scene import cameras as scene_cameras, points as scene_points
from carrara.shared import colmap
from carrara.shared.camera_models import is_pinhole_equivalent, model_by_name, pinhole_intrinsics
from carrara.shared.transforms_json import read_transforms
from colmap_models import ALL_MODEL_NAMES, synthetic_model, write_pycolmap
from testkit import shared_dataset, team_param, write_chair_in_colmap_frame, write_nerf_synthetic_chair

_DATA_KINDS = ("objects", "meshes", "cameras", "collections", "materials", "node_groups", "images", "actions")


@pytest.fixture
def scene(registered_addon):
    return bpy.context.scene


@dataclass
class RealCapture:
    model: Path                      # the COLMAP model folder
    images_dir: Path                 # where its photos are
    size: tuple[int, int]            # the photos' width and height
    pixel_aspect: float              # Blender's pixel_aspect_y / pixel_aspect_x: the focal lengths' ratio


@pytest.fixture(params=["chair", team_param("fountain", data="strecha_fountain_p11")])
def capture(request, tmp_path):
    """A real capture: the bundled chair in a COLMAP-like world (tilted, scaled, off-centre), or the team's fountain
    (1536x1024 photos, fx != fy)."""
    if request.param == "chair":
        folder = write_chair_in_colmap_frame(tmp_path / "chair")
        return RealCapture(folder / "sparse" / "0", folder / "images", (400, 400), 1.0)
    root = shared_dataset("strecha_fountain_p11")
    return RealCapture(root / "colmap_gt_poses" / "sparse" / "0", root / "images", (1536, 1024), 1379.74 / 1382.08)


def imported_cameras(scene):
    props = scene.carrara.reconstruction
    root = bpy.data.objects[props.root_empty_name]
    return [o for o in bpy.data.objects if o.type == "CAMERA" and o.parent == root]


def blender_pixels(scene, camera_obj, xyz_world):
    """Where Blender's camera puts world points, in COLMAP pixel coordinates (origin top-left corner)."""
    scene_cameras.apply_camera_render_settings(scene, camera_obj)
    uv = np.array([tuple(world_to_camera_view(scene, camera_obj, Vector(p)))[:2] for p in xyz_world])
    return np.column_stack([uv[:, 0] * scene.render.resolution_x, (1 - uv[:, 1]) * scene.render.resolution_y])


def reprojection_errors(scene, rec, ref: pycolmap.Reconstruction, pinhole_core=False):
    """Per camera: the largest distance between Blender's and COLMAP's projections of its observed points."""
    root = np.array(bpy.data.objects[scene.carrara.reconstruction.root_empty_name].matrix_world)
    xyz = dict(zip(rec.points.ids.tolist(), rec.points.xyz))
    errors = {}
    for camera_obj in imported_cameras(scene):
        image = ref.images[camera_obj[scene_cameras.IMAGE_ID_KEY]]
        ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
        points = np.array([xyz[i] for i in ids])
        in_camera = np.array([image.cam_from_world() * p for p in points])
        if pinhole_core:  # distorted models: Blender reproduces their pinhole core, K alone
            camera = rec.cameras[image.camera_id]
            fx, fy, cx, cy = pinhole_intrinsics(camera.model, camera.params)
            expected = in_camera[:, :2] / in_camera[:, 2:] * [fx, fy] + [cx, cy]
        else:
            expected = np.array(image.camera.img_from_cam(in_camera))
        world = points @ root[:3, :3].T + root[:3, 3]
        errors[image.name] = float(np.abs(blender_pixels(scene, camera_obj, world) - expected).max())
    return errors


@pytest.mark.parametrize("z_up", [False, True])
def test_real_capture_reprojects_within_a_tenth_of_a_pixel(scene, capture, z_up):
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(capture.model), z_up=z_up) == {"FINISHED"}
    ref = pycolmap.Reconstruction(str(capture.model))
    errors = reprojection_errors(scene, colmap.read_model(capture.model), ref)
    assert len(errors) == ref.num_reg_images()
    assert max(errors.values()) < 0.1, errors
    props = scene.carrara.reconstruction
    assert (props.image_count, props.point_count, props.undistorted) == \
        (ref.num_reg_images(), ref.num_points3D(), True)
    assert props.images_dir == str(capture.images_dir)


@pytest.mark.parametrize("binary", [True, False], ids=["bin", "txt"])
def test_several_pinhole_cameras_of_different_shapes_reproject(scene, tmp_path, binary):
    ref = synthetic_model("PINHOLE", rigs=3, frames_per_rig=3, points=80)
    cameras = list(ref.cameras.values())
    cameras[1].params = [520.0, 470.0, 301.3, 255.9]             # fx > fy, off-centre
    cameras[2].width, cameras[2].height = 480, 640                 # portrait, fy > fx
    cameras[2].params = [430.0, 455.0, 250.2, 330.8]
    ref.cameras[cameras[0].camera_id].model = pycolmap.CameraModelId.SIMPLE_PINHOLE
    ref.cameras[cameras[0].camera_id].params = [505.0, 318.4, 244.1]
    folder = write_pycolmap(ref, tmp_path / "model", binary)
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(folder), photos="NONE") == {"FINISHED"}
    errors = reprojection_errors(scene, colmap.read_model(folder), pycolmap.Reconstruction(str(folder)))
    assert len(errors) == 9 and max(errors.values()) < 0.1, errors


@pytest.mark.parametrize("model_name", [m for m in ALL_MODEL_NAMES if m != "EQUIRECTANGULAR"])
def test_every_camera_model_imports_with_its_pinhole_core_exact(scene, tmp_path, model_name):
    folder = write_pycolmap(synthetic_model(model_name, points=40), tmp_path / "m", binary=model_name < "M")
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(folder), photos="NONE") == {"FINISHED"}
    rec = colmap.read_model(folder)
    exact = all(is_pinhole_equivalent(c.model, c.params) for c in rec.cameras.values())
    assert scene.carrara.reconstruction.undistorted == exact
    errors = reprojection_errors(scene, rec, pycolmap.Reconstruction(str(folder)), pinhole_core=not exact)
    assert max(errors.values()) < 0.1, errors
    for camera_obj in imported_cameras(scene):
        camera = rec.cameras[camera_obj.data["colmap_camera_id"]]
        assert camera_obj.data["colmap_model"] == model_name
        np.testing.assert_array_equal(camera_obj.data["colmap_params"], camera.params)
        names = model_by_name(model_name).distortion_names
        if names:
            assert tuple(camera_obj.data["colmap_distortion"].keys()) == names


def test_equirectangular_cameras_become_panoramic(scene, tmp_path):
    folder = write_pycolmap(synthetic_model("EQUIRECTANGULAR", points=40), tmp_path / "m")
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(folder), photos="NONE") == {"FINISHED"}
    assert {(c.data.type, c.data.panorama_type) for c in imported_cameras(scene)} == {("PANO", "EQUIRECTANGULAR")}


def test_points_keep_exact_colours_and_render_as_points(scene, capture):
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(capture.model), photos="NONE") == {"FINISHED"}
    rec = colmap.read_model(capture.model)
    obj = bpy.data.objects[scene.carrara.reconstruction.points_object_name]
    mesh = obj.data
    np.testing.assert_allclose(scene_points.point_positions(obj), rec.points.xyz, rtol=1e-6, atol=1e-5)
    rgba = np.empty(len(mesh.vertices) * 4, np.float32)
    mesh.color_attributes[scene_points.COLOR_ATTRIBUTE].data.foreach_get("color_srgb", rgba)
    np.testing.assert_array_equal(np.rint(rgba.reshape(-1, 4)[:, :3] * 255).astype(np.uint8), rec.points.rgb)
    lengths = np.empty(len(mesh.vertices), np.int32)
    mesh.attributes[scene_points.TRACK_LENGTH_ATTRIBUTE].data.foreach_get("value", lengths)
    np.testing.assert_array_equal(lengths, np.diff(rec.points.track_offsets))
    assert len(mesh.polygons) == 0
    # The Geometry Nodes modifier turns the vertices into real points that a render shows in their colour.
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    assert "Carrara Points" in [m.name for m in obj.modifiers]
    assert len(evaluated.data.vertices) == 0  # the evaluated geometry is a point cloud, no longer a mesh


def test_points_appear_in_a_render_with_their_colour(scene, tmp_path):
    """Red points seen by an imported camera show red in a tiny Cycles render, and only thanks to the modifier."""
    ref = synthetic_model("SIMPLE_PINHOLE", [40.0, 16.0, 16.0], rigs=1, frames_per_rig=2, points=30, width=32,
                          height=32)
    for point in ref.points3D.values():
        point.color = np.array([255, 0, 0], np.uint8)
    folder = write_pycolmap(ref, tmp_path / "m")
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(folder), photos="NONE", point_radius=0.5) == \
        {"FINISHED"}
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.device = "CPU"
    points = bpy.data.objects[scene.carrara.reconstruction.points_object_name]
    assert red_fraction(scene, tmp_path / "with.png") > 0.01, "the points did not render in their colour"
    points.modifiers["Carrara Points"].show_render = False
    assert red_fraction(scene, tmp_path / "without.png") == 0.0  # bare vertices never render


def red_fraction(scene, path):
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    pixels = np.array(image.pixels[:]).reshape(image.size[1], image.size[0], 4)
    return float(((pixels[..., 0] > 0.5) & (pixels[..., 1] < 0.2) & (pixels[..., 2] < 0.2)).mean())


def test_animated_camera_follows_every_photo(scene, tmp_path):
    ref = synthetic_model("PINHOLE", rigs=1, frames_per_rig=6, points=40)
    folder = write_pycolmap(ref, tmp_path / "video")
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(folder), camera_mode="ANIMATED", photos="NONE") == \
        {"FINISHED"}
    (camera_obj,) = imported_cameras(scene)
    assert bpy.ops.carrara.look_through_camera(camera_name=camera_obj.name) == {"FINISHED"}
    assert scene.camera == camera_obj and (scene.frame_start, scene.frame_end) == (1, 6)
    rec = colmap.read_model(folder)
    frame_ids = list(camera_obj[scene_cameras.FRAME_IMAGE_IDS_KEY])
    assert [rec.images[i].name for i in frame_ids] == sorted(im.name for im in rec.images.values())
    root = np.array(bpy.data.objects[scene.carrara.reconstruction.root_empty_name].matrix_world)
    xyz = dict(zip(rec.points.ids.tolist(), rec.points.xyz))
    for frame, image_id in enumerate(frame_ids, start=1):
        scene.frame_set(frame)
        image = ref.images[image_id]
        points = np.array([xyz[p.point3D_id] for p in image.points2D if p.has_point3D()])
        expected = np.array(image.camera.img_from_cam(np.array([image.cam_from_world() * p for p in points])))
        world = points @ root[:3, :3].T + root[:3, 3]
        assert np.abs(blender_pixels(scene, camera_obj, world) - expected).max() < 0.1


def test_photos_as_backgrounds_and_as_planes(scene, capture):
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(capture.model)) == {"FINISHED"}
    images_dir = capture.images_dir
    for camera_obj in imported_cameras(scene):
        (background,) = camera_obj.data.background_images
        assert bpy.path.abspath(background.image.filepath) == str(images_dir / camera_obj.name)
        assert camera_obj.data.show_background_images
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(capture.model), photos="PLANE") == {"FINISHED"}
    for camera_obj in imported_cameras(scene=bpy.context.scene):
        (plane,) = camera_obj.children
        texture = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
        assert bpy.path.abspath(texture.image.filepath) == str(images_dir / camera_obj.name)
        corners = np.array([v.co[:] for v in plane.data.vertices])
        assert np.all(corners[:, 2] < 0)  # in front of the camera, which looks down -z


def test_z_up_moves_only_the_root(scene, capture):
    bpy.ops.import_scene.carrara_colmap(filepath=str(capture.model), z_up=False, photos="NONE")
    flat = {o[scene_cameras.IMAGE_ID_KEY]: np.array(o.matrix_basis) for o in imported_cameras(scene)}
    assert np.allclose(np.array(bpy.data.objects[scene.carrara.reconstruction.root_empty_name].matrix_world),
                       np.eye(4))
    bpy.ops.import_scene.carrara_colmap(filepath=str(capture.model), z_up=True, photos="NONE")
    upright = {o[scene_cameras.IMAGE_ID_KEY]: np.array(o.matrix_basis) for o in imported_cameras(scene)}
    assert sorted(upright) == sorted(flat)
    for image_id, matrix in flat.items():
        np.testing.assert_allclose(upright[image_id], matrix, atol=1e-6)
    root = np.array(bpy.data.objects[scene.carrara.reconstruction.root_empty_name].matrix_world)
    np.testing.assert_allclose(root[:3, :3] @ root[:3, :3].T, np.eye(3), atol=1e-6)
    image_up = np.array([np.array(o.matrix_world)[:3, 1] for o in imported_cameras(scene)]).mean(0)
    np.testing.assert_allclose(image_up / np.linalg.norm(image_up), [0, 0, 1], atol=1e-5)  # the photos' up is +Z


def test_importing_leaves_what_was_there_alone(scene, capture):
    bpy.ops.mesh.primitive_cube_add(location=(1, 2, 3))
    cube = bpy.context.active_object
    artist_camera = bpy.data.objects.new("Artist camera", bpy.data.cameras.new("Artist camera"))
    scene.collection.objects.link(artist_camera)
    scene.camera = artist_camera
    scene.render.resolution_x, scene.render.resolution_y = 1234, 567
    before = {kind: sorted(d.name for d in getattr(bpy.data, kind)) for kind in _DATA_KINDS}
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(capture.model), photos="NONE") == {"FINISHED"}
    after = {kind: sorted(d.name for d in getattr(bpy.data, kind)) for kind in _DATA_KINDS}
    for kind in _DATA_KINDS:
        assert set(before[kind]) <= set(after[kind])
    assert tuple(cube.location) == (1, 2, 3) and cube.parent is None
    assert scene.camera == artist_camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1234, 567)
    photo_camera = imported_cameras(scene)[0]
    assert bpy.ops.carrara.look_through_camera(camera_name=photo_camera.name) == {"FINISHED"}
    assert scene.camera == photo_camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == capture.size
    assert scene.render.pixel_aspect_y / scene.render.pixel_aspect_x == pytest.approx(capture.pixel_aspect)


@pytest.mark.parametrize("source, photos", [("chair", 60), team_param("team-chair", 100, data="nerf_synthetic_chair")])
def test_transforms_json_imports_and_exports_the_same_cameras(scene, tmp_path, source, photos):
    chair = write_nerf_synthetic_chair(tmp_path / "chair") if source == "chair" else \
        shared_dataset("nerf_synthetic_chair") / "transforms_train.json"
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(chair), photos="NONE") == {"FINISHED"}
    props = scene.carrara.reconstruction
    assert props.source_format == "TRANSFORMS" and props.point_count == 0 and props.image_count == photos
    out = tmp_path / "transforms.json"
    assert bpy.ops.export_scene.carrara_transforms(filepath=str(out)) == {"FINISHED"}
    original, _ = read_transforms(chair)
    back, extras = read_transforms(out)
    assert extras.sphere is not None
    np.testing.assert_allclose(extras.sphere.center, props.sphere_center, rtol=1e-6)
    exported = {(back.images_dir / im.name).resolve(): im for im in back.images.values()}
    for image in original.images.values():
        twin = exported[(original.images_dir / image.name).resolve()]
        np.testing.assert_allclose(twin.qvec, image.qvec, atol=1e-12)
        np.testing.assert_allclose(twin.tvec, image.tvec, atol=1e-12)
