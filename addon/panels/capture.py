"""The sidebar's Reconstruction panel: import a capture, what was imported, the sphere and its warnings, export."""
from __future__ import annotations

import textwrap
from pathlib import Path

from ..operators.prepare import active_prepare_run
from ..scene import sphere as scene_sphere
from .progress_text import progress_text
from .sidebar import SidebarPanel

_WRAP = 46  # characters per warning line: the sidebar is narrow


class CARRARA_PT_reconstruction(SidebarPanel):
    bl_label = "Reconstruction"
    bl_idname = "CARRARA_PT_reconstruction"
    bl_order = 0   # first in the tab; the Backend panel comes after

    def draw(self, context):
        layout = self.layout
        props = context.scene.carrara.reconstruction
        layout.operator("import_scene.carrara_colmap", text="Import COLMAP / transforms.json", icon="IMPORT")
        layout.operator("carrara.new_from_capture", icon="FILE_MOVIE")
        preparing = active_prepare_run(context.scene)
        if preparing is not None:
            layout.progress(factor=preparing.progress, text=f"Preparing: {progress_text(preparing)}")
        if not props.has_capture:
            layout.label(text="Nothing imported yet", icon="INFO")
            return
        box = layout.box()
        box.label(text=Path(props.model_path).name or props.model_path, icon="FILE_FOLDER")
        box.label(text=f"{props.image_count} photos, {props.point_count:,} points ({props.camera_models})")
        if not props.images_dir:
            box.label(text="Photos' folder not found", icon="ERROR")
        if not props.undistorted:
            _wrapped(box, "The cameras have lens distortion: Blender shows them as pinholes, and training needs "
                          "undistorted photos.", "ERROR")
            if props.source_format == "COLMAP":
                box.operator("carrara.undistort_capture", icon="IMAGE_DATA")
        box.operator("carrara.look_through_camera", icon="CAMERA_DATA")

        layout.prop(props, "scene_type", expand=True)
        sphere = layout.box()
        sphere.label(text="Bounding sphere (input coordinates)", icon="SPHERE")
        sphere.prop(props, "sphere_center")
        sphere.prop(props, "sphere_radius")
        row = sphere.row(align=True)
        row.operator("carrara.sphere_fit_selected_points", text="Selected Points")
        row.operator("carrara.sphere_fit_camera_views", text="Cameras' View")
        sphere.operator("carrara.sphere_estimate", text="Estimate Again", icon="FILE_REFRESH")
        if scene_sphere.find_object(context.scene, scene_sphere.SPHERE_ROLE) is None:
            sphere.label(text="The sphere object was deleted: Estimate Again", icon="ERROR")
        for warning in filter(None, props.sphere_warnings.split("\n")):
            _wrapped(sphere, warning, "ERROR")

        crop = layout.box()
        if props.crop_enabled:
            crop.label(text="Crop box", icon="MESH_CUBE")
            crop.prop(props, "crop_min")
            crop.prop(props, "crop_max")
            crop.operator("carrara.crop_box_remove", icon="X")
        else:
            crop.operator("carrara.crop_box_add", icon="MESH_CUBE")
        layout.operator("export_scene.carrara_transforms", icon="EXPORT")


def _wrapped(layout, text: str, icon: str) -> None:
    column = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, _WRAP)):
        column.label(text=line, icon=icon if i == 0 else "BLANK1")


CLASSES = (CARRARA_PT_reconstruction,)
