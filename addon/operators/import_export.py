"""File > Import > COLMAP (and the panel's button), File > Export > transforms.json, and "look through a photo".

The import is one undoable operator: it reads first (a bad file changes nothing), then builds everything or
nothing (``scene/capture.py``). Every error becomes a ``report`` naming the file and the problem.
"""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ...shared.dataset_source import read_dataset
from ...shared.transforms_json import write_transforms
from ..scene import cameras as scene_cameras, sphere as scene_sphere
from ..properties.capture import SCENE_TYPE_ITEMS
from ..scene.capture import ImportOptions, import_capture


class CARRARA_OT_import_colmap(bpy.types.Operator, ImportHelper):
    """Import a COLMAP sparse model (binary or text, any folder layout) or a transforms.json, exactly"""

    bl_idname = "import_scene.carrara_colmap"
    bl_label = "Import COLMAP"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ""
    filter_glob: bpy.props.StringProperty(default="*.bin;*.txt;*.json", options={"HIDDEN"})
    camera_mode: bpy.props.EnumProperty(
        name="Cameras", default=scene_cameras.PER_IMAGE,
        items=[(scene_cameras.PER_IMAGE, "One per photo", "A camera for every registered photo"),
               (scene_cameras.ANIMATED, "One animated", "One camera keyed through the photos in name order "
                                                        "(video frames)")])
    photos: bpy.props.EnumProperty(
        name="Photos", default=scene_cameras.BACKGROUND,
        items=[(scene_cameras.BACKGROUND, "Camera background", "Show each photo behind its camera's view"),
               (scene_cameras.PLANE, "Image planes", "A textured plane in front of each camera, at the depth of "
                                                     "its points"),
               (scene_cameras.NO_PHOTOS, "None", "Do not load the photos")])
    z_up: bpy.props.BoolProperty(
        name="Z up", default=True,
        description="Turn the reconstruction upright on its root Empty only (the data keeps COLMAP coordinates)")
    scene_type: bpy.props.EnumProperty(name="Scene type", items=SCENE_TYPE_ITEMS, default="object")
    point_radius: bpy.props.FloatProperty(
        name="Point size", default=0.0, min=0.0, precision=4,
        description="Radius the points are drawn with; 0 picks one from the bounding sphere")

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        try:
            loaded = read_dataset(path)
        except (ValueError, OSError) as error:  # the message starts with the file at fault
            self.report({"ERROR"}, f"Carrara import failed: {error}")
            return {"CANCELLED"}
        options = ImportOptions(self.camera_mode, self.photos, self.z_up, self.scene_type, self.point_radius)
        try:
            notes = import_capture(context.scene, loaded, options)
        except Exception as error:  # the build rolled back: nothing was left behind; say what broke
            detail = str(error) if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: {error}"
            self.report({"ERROR"}, f"Carrara import of {loaded.model_path} failed: {detail}")
            return {"CANCELLED"}
        rec = loaded.rec
        self.report({"INFO"}, f"Imported {len(rec.images)} cameras and {len(rec.points):,} points from "
                              f"{loaded.model_path}")
        for note in notes:
            self.report({"WARNING"}, note)
        return {"FINISHED"}


class CARRARA_OT_export_transforms(bpy.types.Operator, ExportHelper):
    """Write the imported cameras and the bounding sphere as a transforms.json Neuralangelo trains from"""

    bl_idname = "export_scene.carrara_transforms"
    bl_label = "Export transforms.json"
    bl_options = {"REGISTER"}

    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.scene.carrara.reconstruction.has_capture

    def invoke(self, context, event):
        props = context.scene.carrara.reconstruction
        folder = Path(props.images_dir).parent if props.images_dir else Path(props.model_path).parent
        self.filepath = str(folder / "transforms.json")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        scene = context.scene
        props = scene.carrara.reconstruction
        try:
            # Re-read the source: the exported poses are COLMAP's float64 values, not Blender's float32 copies.
            rec = read_dataset(props.model_path).rec
            aabb = scene_sphere.crop_box_from_props(scene) if props.crop_enabled else None
            warnings = write_transforms(Path(bpy.path.abspath(self.filepath)), rec,
                                        scene_sphere.sphere_from_props(scene), aabb)
        except (ValueError, OSError) as error:
            self.report({"ERROR"}, f"Carrara export failed: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {len(rec.images)} frames to {self.filepath}")
        for warning in warnings:
            self.report({"WARNING"}, warning)
        return {"FINISHED"}


class CARRARA_OT_look_through_camera(bpy.types.Operator):
    """Make this imported camera the scene's camera, with its photo's resolution and pixel aspect"""

    bl_idname = "carrara.look_through_camera"
    bl_label = "Look Through Photo Camera"
    bl_options = {"REGISTER", "UNDO"}

    camera_name: bpy.props.StringProperty(name="Camera", description="Object name; empty: the active object")

    def execute(self, context):
        obj = bpy.data.objects.get(self.camera_name) if self.camera_name else context.active_object
        if obj is None or not scene_cameras.apply_camera_render_settings(context.scene, obj):
            self.report({"ERROR"}, "Select a camera imported by Carrara first")
            return {"CANCELLED"}
        context.scene.camera = obj
        frames = obj.get(scene_cameras.FRAME_IMAGE_IDS_KEY)
        if frames is not None:
            context.scene.frame_start, context.scene.frame_end = 1, len(frames)
        return {"FINISHED"}


def import_menu(self, context):
    self.layout.operator(CARRARA_OT_import_colmap.bl_idname, text="COLMAP / transforms.json (Carrara)")


def export_menu(self, context):
    self.layout.operator(CARRARA_OT_export_transforms.bl_idname, text="transforms.json (Carrara)")


CLASSES = (CARRARA_OT_import_colmap, CARRARA_OT_export_transforms, CARRARA_OT_look_through_camera)
