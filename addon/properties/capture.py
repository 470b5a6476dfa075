"""``Scene.carrara.reconstruction``: the imported capture (a COLMAP model or transforms.json) and its bounding
sphere, saved in the .blend. The property keeps its first name, which saved files and scripts use; in code it is the
capture, apart from the Reconstruct run that trains on it.

The contract other parts read (the run panel and the backend jobs of issue 5 among them):
- ``root_empty_name``: the Empty every imported object hangs under; it carries COLMAP -> Blender (and the
  optional Z-up alignment). Parent backend meshes (which come back in the input's coordinates) to it.
- ``collection_name``: the collection holding the import.
- ``model_path``: the COLMAP model folder or transforms.json that was read; ``source_format`` says which.
- ``images_dir``: the photos' folder ("" when not found).
- ``sphere_center`` / ``sphere_radius``: the bounding sphere in the INPUT's world coordinates (COLMAP's), never
  Blender's; the sphere Empty shows it and edits it.
- ``scene_type``: "object", "indoor" or "outdoor", as ``shared.jobs.SCENE_TYPES``.
- ``crop_enabled`` with ``crop_min`` / ``crop_max``: an optional axis-aligned box, input coordinates too.
Objects are referred to by name, never by reference (references die with undo).
"""
from __future__ import annotations

import bpy

from ...shared.jobs import SCENE_TYPES
from ..scene import sphere as scene_sphere

_SCENE_TYPE_HELP = {
    "object": "An object seen from around it: the cameras stay outside the sphere",
    "indoor": "A room seen from inside: the sphere holds the cameras",
    "outdoor": "A building or landscape: the sphere holds the foreground, the sky is background",
}
SCENE_TYPE_ITEMS = [(name, name.title(), _SCENE_TYPE_HELP[name]) for name in SCENE_TYPES]

SOURCE_FORMAT_ITEMS = [
    ("COLMAP", "COLMAP", "A COLMAP sparse model"),
    ("TRANSFORMS", "transforms.json", "An instant-ngp / NeRF / Neuralangelo transforms.json"),
]


def _sphere_changed(self, context) -> None:
    if scene_sphere.updating_together():
        return
    scene_sphere.write_sphere_to_object(self.id_data)
    scene_sphere.refresh_warnings(self.id_data)


def _crop_changed(self, context) -> None:
    if not scene_sphere.updating_together():
        scene_sphere.write_crop_box_to_object(self.id_data)


def _scene_type_changed(self, context) -> None:
    if not scene_sphere.updating_together():
        scene_sphere.refresh_warnings(self.id_data)


class CaptureProperties(bpy.types.PropertyGroup):
    """The imported capture of this scene and its bounding sphere (input coordinates)."""

    root_empty_name: bpy.props.StringProperty(
        name="Root Empty", description="The Empty carrying COLMAP to Blender; everything imported hangs under it")
    collection_name: bpy.props.StringProperty(name="Collection", description="The collection holding the import")
    points_object_name: bpy.props.StringProperty(name="Points object")
    sphere_object_name: bpy.props.StringProperty(name="Sphere object")
    crop_box_object_name: bpy.props.StringProperty(name="Crop box object")
    model_path: bpy.props.StringProperty(
        name="Model", description="The COLMAP model folder or transforms.json that was imported")
    source_format: bpy.props.EnumProperty(name="Format", items=SOURCE_FORMAT_ITEMS, default="COLMAP")
    images_dir: bpy.props.StringProperty(
        name="Photos", description="The folder the photos were found in (empty when not found)")
    image_count: bpy.props.IntProperty(name="Photos", min=0)
    point_count: bpy.props.IntProperty(name="Points", min=0)
    camera_models: bpy.props.StringProperty(name="Camera models", description="COLMAP camera models in use")
    undistorted: bpy.props.BoolProperty(
        name="Undistorted", default=True,
        description="Every camera is an ideal pinhole (the photos can be trained on as they are)")
    scene_type: bpy.props.EnumProperty(
        name="Scene type", items=SCENE_TYPE_ITEMS, default="object", update=_scene_type_changed,
        description="What kind of capture this is: it decides how the sphere is judged and trained")
    sphere_center: bpy.props.FloatVectorProperty(
        name="Centre", size=3, subtype="XYZ", precision=4, update=_sphere_changed,
        description="Centre of the bounding sphere, in the input's (COLMAP) coordinates")
    sphere_radius: bpy.props.FloatProperty(
        name="Radius", default=1.0, min=1e-9, soft_min=1e-4, precision=4, update=_sphere_changed,
        description="Radius of the bounding sphere, in the input's (COLMAP) units")
    sphere_warnings: bpy.props.StringProperty(name="Sphere warnings", description="One warning per line")
    crop_enabled: bpy.props.BoolProperty(name="Crop box", default=False)
    crop_min: bpy.props.FloatVectorProperty(
        name="Min", size=3, subtype="XYZ", precision=4, update=_crop_changed,
        description="Lower corner of the crop box, in the input's (COLMAP) coordinates")
    crop_max: bpy.props.FloatVectorProperty(
        name="Max", size=3, subtype="XYZ", precision=4, update=_crop_changed,
        description="Upper corner of the crop box, in the input's (COLMAP) coordinates")

    @property
    def has_capture(self) -> bool:
        return bool(self.root_empty_name)


CLASSES = (CaptureProperties,)
