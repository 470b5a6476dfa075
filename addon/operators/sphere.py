"""Operators that shape the bounding sphere and the crop box; the sync itself lives in ``scene/sphere.py``."""
from __future__ import annotations

import bpy
import numpy as np

from ...shared.dataset_source import read_dataset
from ...shared.sphere import estimate_sphere, fit_sphere_to_points, fit_sphere_to_views
from ..scene import sphere as scene_sphere
from ..scene.points import point_positions, selected_point_positions


class _NeedsCapture:
    @classmethod
    def poll(cls, context):
        return context.scene.carrara.reconstruction.has_capture


class CARRARA_OT_sphere_fit_selected_points(_NeedsCapture, bpy.types.Operator):
    """Fit the sphere around the points selected in Edit Mode on the point cloud"""

    bl_idname = "carrara.sphere_fit_selected_points"
    bl_label = "Fit to Selected Points"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        points = scene_sphere.find_object(scene, scene_sphere.POINTS_ROLE)
        if points is None:
            self.report({"ERROR"}, "This reconstruction has no point cloud to select from")
            return {"CANCELLED"}
        selected = selected_point_positions(points)
        if len(selected) < 2:
            self.report({"ERROR"}, f"Select at least two points of '{points.name}' in Edit Mode first")
            return {"CANCELLED"}
        scene_sphere.set_sphere(scene, fit_sphere_to_points(selected, coverage=1.0))
        self.report({"INFO"}, f"Sphere fitted to {len(selected):,} selected points")
        return {"FINISHED"}


class CARRARA_OT_sphere_fit_camera_views(_NeedsCapture, bpy.types.Operator):
    """Fit the sphere to what the cameras frame: where their axes meet, as large as their views hold"""

    bl_idname = "carrara.sphere_fit_camera_views"
    bl_label = "Fit to Cameras' View"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        root = scene_sphere.find_object(scene, scene_sphere.ROOT_ROLE)
        if root is None or scene_sphere.CAMERA_AXES_KEY not in root:
            self.report({"ERROR"}, "The reconstruction's root Empty (with its camera data) is gone; re-import")
            return {"CANCELLED"}
        points = scene_sphere.find_object(scene, scene_sphere.POINTS_ROLE)
        xyz = point_positions(points, 200_000) if points is not None else None
        sphere = fit_sphere_to_views(scene_sphere.camera_centers(scene),
                                     np.array(root[scene_sphere.CAMERA_AXES_KEY]).reshape(-1, 3),
                                     np.array(root[scene_sphere.CAMERA_HALF_FOV_KEY]), xyz)
        scene_sphere.set_sphere(scene, sphere)
        return {"FINISHED"}


class CARRARA_OT_sphere_estimate(_NeedsCapture, bpy.types.Operator):
    """Estimate the sphere again for the chosen scene type (robust to stray points)"""

    bl_idname = "carrara.sphere_estimate"
    bl_label = "Estimate Sphere"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        props = context.scene.carrara.reconstruction
        try:
            rec = read_dataset(props.model_path).rec
        except (ValueError, OSError) as error:
            self.report({"ERROR"}, f"Cannot re-read the model: {error}")
            return {"CANCELLED"}
        scene_sphere.set_sphere(context.scene, estimate_sphere(rec, props.scene_type))
        return {"FINISHED"}


class CARRARA_OT_crop_box_add(_NeedsCapture, bpy.types.Operator):
    """Add an axis-aligned crop box, starting as the sphere's bounding box"""

    bl_idname = "carrara.crop_box_add"
    bl_label = "Add Crop Box"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        props = scene.carrara.reconstruction
        root = scene_sphere.find_object(scene, scene_sphere.ROOT_ROLE)
        collection = bpy.data.collections.get(props.collection_name)
        if root is None or collection is None:
            self.report({"ERROR"}, "The reconstruction's root Empty or collection is gone; re-import")
            return {"CANCELLED"}
        existing = scene_sphere.find_object(scene, scene_sphere.CROP_ROLE)
        aabb = scene_sphere.sphere_from_props(scene).aabb()
        obj = existing or scene_sphere.build_crop_box_object(scene, aabb, collection, root)
        props.crop_box_object_name = obj.name
        props.crop_enabled = True
        scene_sphere.set_crop_box(scene, aabb)
        return {"FINISHED"}


class CARRARA_OT_crop_box_remove(_NeedsCapture, bpy.types.Operator):
    """Remove the crop box: the sphere's box bounds the export again"""

    bl_idname = "carrara.crop_box_remove"
    bl_label = "Remove Crop Box"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        obj = scene_sphere.find_object(scene, scene_sphere.CROP_ROLE)
        if obj is not None:
            bpy.data.objects.remove(obj)
        props = scene.carrara.reconstruction
        props.crop_enabled = False
        props.crop_box_object_name = ""
        return {"FINISHED"}


CLASSES = (CARRARA_OT_sphere_fit_selected_points, CARRARA_OT_sphere_fit_camera_views, CARRARA_OT_sphere_estimate,
           CARRARA_OT_crop_box_add, CARRARA_OT_crop_box_remove)
