"""One import, all or nothing: read the input once (``shared/dataset_source``), build the collection under one root
Empty, record it, and say what training will think of it (the same verdict the dataset check gives).

The root Empty carries COLMAP -> Blender (identity, or the Z-up alignment); everything else keeps the input's
coordinates as its local ones, so meshes from the backend (input coordinates too) land in place when parented to
it. Nothing that existed before is touched; if any step fails, every datablock this import made is removed and
the scene properties are left as they were.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from ...shared.camera_convention import up_direction_from_cameras, z_up_matrix
from ...shared.camera_models import is_pinhole_equivalent
from ...shared.dataset_source import DatasetSource, dataset_problems
from ...shared.reconstruction import Reconstruction
from ...shared.sphere import BoundingSphere, camera_axes, estimate_sphere, half_fov_rad
from . import cameras as scene_cameras, sphere as scene_sphere
from .created import CreatedData
from .points import build_point_cloud

_POINT_RADIUS_PER_SPHERE = 1.0 / 250.0  # default drawn point radius, as a fraction of the sphere's radius


@dataclass
class ImportOptions:
    camera_mode: str = scene_cameras.PER_IMAGE     # or scene_cameras.ANIMATED
    photos: str = scene_cameras.BACKGROUND         # or PLANE, NONE
    z_up: bool = True
    scene_type: str = "object"
    point_radius: float = 0.0                      # 0: a fraction of the sphere's radius


def import_capture(scene: bpy.types.Scene, loaded: DatasetSource, options: ImportOptions) -> list[str]:
    """Build the import into ``scene`` and record it in ``scene.carrara.reconstruction``; returns notes: the
    dataset's problems (photos are not opened here: that is the backend's check) and the cameras' notes."""
    rec = loaded.rec
    sphere = loaded.sphere or estimate_sphere(rec, options.scene_type)
    name = _display_name(loaded)
    created = CreatedData()
    try:
        collection = created.add(bpy.data.collections.new(name))
        scene.collection.children.link(collection)
        camera_collection = created.add(bpy.data.collections.new(f"{name} cameras"))
        collection.children.link(camera_collection)
        root = _build_root(f"{name} root", rec, sphere, options.z_up, collection, created)
        points = None
        if len(rec.points):
            radius = options.point_radius or sphere.radius * _POINT_RADIUS_PER_SPHERE
            points = build_point_cloud(f"{name} points", rec.points, collection, root, radius, created)
            points[scene_sphere.ROLE_KEY] = scene_sphere.POINTS_ROLE
        sphere_obj = scene_sphere.build_sphere_object(f"{name} sphere", sphere, collection, root, created)
        cameras, notes = scene_cameras.build_cameras(rec, camera_collection, root, mode=options.camera_mode,
                                                     photos=options.photos, scene_scale=sphere.radius,
                                                     created=created)
    except Exception:
        created.remove_all()
        raise
    _record(scene, loaded, options, root, collection, points, sphere_obj, sphere)
    if scene.camera is None and cameras:
        scene.camera = cameras[0]
        scene_cameras.apply_camera_render_settings(scene, cameras[0])
    return [str(problem) for problem in dataset_problems(loaded)] + notes


def _build_root(name: str, rec: Reconstruction, sphere: BoundingSphere, z_up: bool,
                collection: bpy.types.Collection, created: CreatedData) -> bpy.types.Object:
    root = created.add(bpy.data.objects.new(name, None))
    root.empty_display_type = "PLAIN_AXES"
    root.empty_display_size = 0.2 * sphere.radius
    root[scene_sphere.ROLE_KEY] = scene_sphere.ROOT_ROLE
    collection.objects.link(root)
    centers, axes = camera_axes(rec)
    root[scene_sphere.CAMERA_CENTERS_KEY] = centers.ravel().tolist()
    root[scene_sphere.CAMERA_AXES_KEY] = axes.ravel().tolist()
    root[scene_sphere.CAMERA_HALF_FOV_KEY] = half_fov_rad(rec).tolist()
    if z_up:
        qvec = np.array([im.qvec for im in rec.images.values()])
        root.matrix_world = Matrix(z_up_matrix(up_direction_from_cameras(qvec), sphere.center).tolist())
    return root


def _record(scene, loaded: DatasetSource, options: ImportOptions, root, collection, points, sphere_obj,
            sphere: BoundingSphere) -> None:
    rec = loaded.rec
    scene_sphere.set_together(
        scene.carrara.reconstruction,
        root_empty_name=root.name,
        collection_name=collection.name,
        points_object_name=points.name if points is not None else "",
        sphere_object_name=sphere_obj.name,
        crop_box_object_name="",
        crop_enabled=False,
        model_path=str(loaded.model_path),
        source_format=loaded.format,
        images_dir=str(rec.images_dir) if rec.images_dir is not None else "",
        image_count=len(rec.images),
        point_count=len(rec.points),
        camera_models=", ".join(sorted({c.model for c in rec.cameras.values()})),
        undistorted=all(is_pinhole_equivalent(c.model, c.params) for c in rec.cameras.values()),
        scene_type=options.scene_type,
        sphere_center=sphere.center.tolist(),
        sphere_radius=sphere.radius,
    )
    scene_sphere.write_sphere_to_object(scene)
    scene_sphere.refresh_warnings(scene)


def _display_name(loaded: DatasetSource) -> str:
    """A readable name: the workspace folder, not "0" or "sparse"."""
    folder = loaded.model_path.parent if loaded.model_path.is_file() else loaded.model_path
    while folder.name.isdigit() or folder.name == "sparse":
        folder = folder.parent
    return folder.name or "reconstruction"
