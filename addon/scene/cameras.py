"""COLMAP images as Blender cameras: one per photo (or one animated camera for a video), exact to COLMAP.

Extrinsics: each camera object's matrix, relative to the root Empty, is the image's camera-to-world in Blender's
camera axes (``c2w_opengl_from_colmap``). Intrinsics: lens, sensor width, HORIZONTAL sensor fit and shift from
``blender_intrinsics``; resolution and pixel aspect are per scene in Blender, so each camera keeps its own on its
data (``carrara_resolution``, ``carrara_pixel_aspect``) and ``apply_camera_render_settings`` puts them on the scene
when the camera becomes the active one. Distortion cannot be shown by a Blender camera: the parameters stay on the
camera data as custom properties and the panel warns.
"""
from __future__ import annotations

import re
from pathlib import Path

import bpy
import numpy as np
from bpy_extras import anim_utils
from mathutils import Matrix

from ...shared.camera_convention import blender_intrinsics, c2w_opengl_from_colmap, qvec_to_rotmat, rotmat_to_qvec
from ...shared.camera_models import SPHERICAL_FAMILY, distortion_parameters, model_by_name, pinhole_intrinsics
from ...shared.reconstruction import Camera, Image, Reconstruction
from .created import CreatedData

IMAGE_ID_KEY = "carrara_image_id"
IMAGE_NAME_KEY = "carrara_image_name"
FRAME_IMAGE_IDS_KEY = "carrara_frame_image_ids"
RESOLUTION_KEY = "carrara_resolution"
PIXEL_ASPECT_KEY = "carrara_pixel_aspect"

PER_IMAGE, ANIMATED = "PER_IMAGE", "ANIMATED"
BACKGROUND, PLANE, NO_PHOTOS = "BACKGROUND", "PLANE", "NONE"


def build_cameras(rec: Reconstruction, collection: bpy.types.Collection, parent: bpy.types.Object, *,
                  mode: str, photos: str, scene_scale: float, created: CreatedData) -> tuple[list, list[str]]:
    """Camera objects for every image of ``rec`` and the notes for the artist (photos not found...)."""
    if mode == ANIMATED:
        return _build_animated_camera(rec, collection, parent, photos, scene_scale, created)
    order = sorted(rec.images.values(), key=lambda im: im.name)
    matrices = c2w_opengl_from_colmap(np.array([im.qvec for im in order]), np.array([im.tvec for im in order]))
    depths = _median_depths(rec, order, scene_scale) if photos == PLANE else None
    objects, missing = [], 0
    for index, (image, matrix) in enumerate(zip(order, matrices)):
        label = Path(image.name).name
        data = _camera_data(label, rec.cameras[image.camera_id], scene_scale, created)
        obj = created.add(bpy.data.objects.new(label, data))
        collection.objects.link(obj)
        obj.parent = parent
        obj.matrix_basis = Matrix(matrix.tolist())
        obj[IMAGE_ID_KEY] = image.image_id
        obj[IMAGE_NAME_KEY] = image.name
        objects.append(obj)
        if photos == NO_PHOTOS:
            continue
        photo = _load_photo(rec, image, created)
        if photo is None:
            missing += 1
        elif photos == BACKGROUND:
            _show_as_background(data, photo)
        else:
            _add_image_plane(obj, photo, rec.cameras[image.camera_id], depths[index], collection, created)
    return objects, _photo_notes(rec, photos, missing, len(order))


def _camera_data(name: str, camera: Camera, scene_scale: float, created: CreatedData) -> bpy.types.Camera:
    data = created.add(bpy.data.cameras.new(name))
    if model_by_name(camera.model).family == SPHERICAL_FAMILY:
        data.type = "PANO"
        data.panorama_type = "EQUIRECTANGULAR"
        aspect = (1.0, 1.0)
    else:
        intrinsics = blender_intrinsics(camera.width, camera.height,
                                        *pinhole_intrinsics(camera.model, camera.params))
        data.sensor_fit = intrinsics.sensor_fit
        data.sensor_width = intrinsics.sensor_width_mm
        data.lens = intrinsics.lens_mm
        data.shift_x, data.shift_y = intrinsics.shift_x, intrinsics.shift_y
        aspect = (intrinsics.pixel_aspect_x, intrinsics.pixel_aspect_y)
    data.clip_start = 1e-3 * scene_scale
    data.clip_end = 1e3 * scene_scale
    data.display_size = 0.08 * scene_scale
    data[RESOLUTION_KEY] = [camera.width, camera.height]
    data[PIXEL_ASPECT_KEY] = list(aspect)
    data["colmap_camera_id"] = camera.camera_id
    data["colmap_model"] = camera.model
    data["colmap_params"] = [float(p) for p in camera.params]
    distortion = distortion_parameters(camera.model, camera.params)
    if distortion:
        data["colmap_distortion"] = distortion
    return data


def apply_camera_render_settings(scene: bpy.types.Scene, obj: bpy.types.Object) -> bool:
    """Give the scene this camera's resolution and pixel aspect (Blender keeps them per scene, not per camera)."""
    if obj is None or obj.type != "CAMERA" or RESOLUTION_KEY not in obj.data:
        return False
    render = scene.render
    render.resolution_x, render.resolution_y = (int(v) for v in obj.data[RESOLUTION_KEY])
    render.resolution_percentage = 100
    render.pixel_aspect_x, render.pixel_aspect_y = (float(v) for v in obj.data[PIXEL_ASPECT_KEY])
    return True


def _load_photo(rec: Reconstruction, image: Image, created: CreatedData) -> bpy.types.Image | None:
    if rec.images_dir is None:
        return None
    path = Path(rec.images_dir) / image.name
    if not path.is_file():
        return None
    return created.add(bpy.data.images.load(str(path), check_existing=False))


def _show_as_background(data: bpy.types.Camera, photo: bpy.types.Image) -> None:
    background = data.background_images.new()
    background.image = photo
    background.frame_method = "STRETCH"  # the frame has the photo's exact aspect, so stretch == fit
    background.alpha = 0.8
    data.show_background_images = True


def _median_depths(rec: Reconstruction, order: list[Image], default: float) -> list[float]:
    """How far in front of each camera its observed points lie (median): where its photo plane belongs."""
    sorter = np.argsort(rec.points.ids)
    sorted_ids = rec.points.ids[sorter]
    depths = []
    for image in order:
        seen = image.point3d_ids[image.point3d_ids >= 0]
        if len(sorted_ids) and len(seen):
            where = np.clip(np.searchsorted(sorted_ids, seen), 0, len(sorted_ids) - 1)
            xyz = rec.points.xyz[sorter[where[sorted_ids[where] == seen]]]
            z = (xyz @ qvec_to_rotmat(image.qvec).T + image.tvec)[:, 2]
            z = z[z > 0]
            depths.append(float(np.median(z)) if len(z) else default)
        else:
            depths.append(default)
    return depths


def _add_image_plane(camera_obj: bpy.types.Object, photo: bpy.types.Image, camera: Camera, depth: float,
                     collection: bpy.types.Collection, created: CreatedData) -> None:
    """A quad in front of the camera, exactly covering its view at ``depth``, textured with the photo."""
    fx, fy, cx, cy = pinhole_intrinsics(camera.model, camera.params)
    corners_px = np.array([[0, camera.height], [camera.width, camera.height], [camera.width, 0], [0, 0]], float)
    # Camera-local Blender axes: x right, y up, looking down -z; pixel v grows downwards.
    verts = np.column_stack([(corners_px[:, 0] - cx) / fx * depth, -(corners_px[:, 1] - cy) / fy * depth,
                             np.full(4, -depth)])
    mesh = created.add(bpy.data.meshes.new(f"{camera_obj.name} photo"))
    mesh.from_pydata(verts.tolist(), [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32).ravel())
    material = created.add(bpy.data.materials.new(f"{camera_obj.name} photo"))
    tree = material.node_tree
    tree.nodes.clear()
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.image = photo
    emission = tree.nodes.new("ShaderNodeEmission")
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(texture.outputs["Color"], emission.inputs["Color"])
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    mesh.materials.append(material)
    plane = created.add(bpy.data.objects.new(f"{camera_obj.name} photo", mesh))
    collection.objects.link(plane)
    plane.parent = camera_obj
    plane.hide_select = True  # clicking in the viewport should pick the camera, not its photo


def _photo_notes(rec: Reconstruction, photos: str, missing: int, total: int) -> list[str]:
    if photos == NO_PHOTOS or not missing:
        return []
    if rec.images_dir is None:
        return [f"The photos' folder was not found, so the {total} cameras show no photo."]
    return [f"{missing} of {total} photos were not found in {rec.images_dir}."]


def _build_animated_camera(rec: Reconstruction, collection: bpy.types.Collection, parent: bpy.types.Object,
                           photos: str, scene_scale: float, created: CreatedData) -> tuple[list, list[str]]:
    """One camera keyed at frames 1..N through the images in name order (a video's frames)."""
    order = sorted(rec.images.values(), key=lambda im: im.name)
    cameras = [rec.cameras[im.camera_id] for im in order]
    sizes = sorted({(c.width, c.height) for c in cameras})
    if len(sizes) > 1:
        raise ValueError(f"one animated camera needs one photo size, but the photos are {sizes[0][0]}x"
                         f"{sizes[0][1]} and {sizes[1][0]}x{sizes[1][1]}: import one camera per photo instead")
    data = _camera_data("Video camera", cameras[0], scene_scale, created)
    obj = created.add(bpy.data.objects.new("Video camera", data))
    collection.objects.link(obj)
    obj.parent = parent
    obj.rotation_mode = "QUATERNION"
    obj[FRAME_IMAGE_IDS_KEY] = [im.image_id for im in order]
    matrices = c2w_opengl_from_colmap(np.array([im.qvec for im in order]), np.array([im.tvec for im in order]))
    quats = rotmat_to_qvec(matrices[:, :3, :3])
    flips = np.concatenate([[1.0], np.sign(np.sum(quats[1:] * quats[:-1], axis=1))]).cumprod()
    quats *= flips[:, None]  # neighbouring frames in one hemisphere: no spins if an artist interpolates
    channels = {("location", i): matrices[:, i, 3] for i in range(3)}
    channels.update({("rotation_quaternion", i): quats[:, i] for i in range(4)})
    if len({tuple(c.params) for c in cameras}) > 1:
        intrinsics = [blender_intrinsics(c.width, c.height, *pinhole_intrinsics(c.model, c.params)) for c in cameras]
        channels[("data.lens", 0)] = np.array([i.lens_mm for i in intrinsics])
        channels[("data.shift_x", 0)] = np.array([i.shift_x for i in intrinsics])
        channels[("data.shift_y", 0)] = np.array([i.shift_y for i in intrinsics])
    _keyframe(obj, channels, created)
    notes = []
    if photos != NO_PHOTOS:
        sequence = _photo_sequence(rec, order, created)
        if sequence is None:
            notes.append("The photos are not a numbered sequence found on disk, so the video camera shows none.")
        else:
            _show_as_background(data, sequence[0])
            background = data.background_images[0]
            background.image_user.frame_duration = len(order)
            background.image_user.frame_start = 1
            background.image_user.frame_offset = sequence[1] - 1
    return [obj], notes


def _keyframe(obj: bpy.types.Object, channels: dict, created: CreatedData) -> None:
    """Constant keys at frames 1..N, written in bulk (exact on whole frames, no invented in-betweens).

    Channels named "data.<path>" animate the camera datablock (lens, shift), which has its own action.
    """
    object_bag = _channelbag(obj, "OBJECT", created)
    data_bag = None
    for (path, index), values in channels.items():
        if path.startswith("data."):
            data_bag = data_bag or _channelbag(obj.data, "CAMERA", created)
            _fill(data_bag.fcurves.new(path[len("data."):], index=index), values)
        else:
            _fill(object_bag.fcurves.new(path, index=index), values)


def _channelbag(owner: bpy.types.ID, id_type: str, created: CreatedData):
    action = created.add(bpy.data.actions.new(f"{owner.name} keys"))
    animation = owner.animation_data_create()
    animation.action = action
    slot = animation.action_slot or action.slots.new(id_type=id_type, name=owner.name)
    animation.action_slot = slot
    return anim_utils.action_ensure_channelbag_for_slot(action, slot)


def _fill(curve, values: np.ndarray) -> None:
    count = len(values)
    co = np.empty((count, 2), np.float32)
    co[:, 0] = np.arange(1, count + 1)
    co[:, 1] = values
    curve.keyframe_points.add(count)
    curve.keyframe_points.foreach_set("co", co.ravel())
    curve.keyframe_points.foreach_set("interpolation", np.zeros(count, np.int32))  # 0 = CONSTANT
    curve.update()


_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[^.]+)$")


def _photo_sequence(rec: Reconstruction, order: list[Image], created: CreatedData):
    """(image sequence, first number) when the names are consecutive numbers on disk, else None."""
    if rec.images_dir is None:
        return None
    matches = [_NUMBERED.match(im.name) for im in order]
    if not all(matches) or len({(m.group(1), m.group(3)) for m in matches}) != 1:
        return None
    numbers = [int(m.group(2)) for m in matches]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    first = Path(rec.images_dir) / order[0].name
    if not first.is_file():
        return None
    sequence = created.add(bpy.data.images.load(str(first), check_existing=False))
    sequence.source = "SEQUENCE"
    return sequence, numbers[0]
