"""The sidebar's Reconstruct panel: the run settings and the button. It only reads and writes properties."""
from __future__ import annotations

import bpy

from ..operators.reconstruct import backend_gpus, readiness_problem
from ..properties.run_settings import gpus_offered
from .sidebar import SidebarPanel


class CARRARA_PT_reconstruct(SidebarPanel):
    bl_label = "Reconstruct"
    bl_order = 1

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.carrara.settings
        layout.prop(settings, "preset")
        problem = readiness_problem(context.scene)
        if problem:
            layout.label(text=problem, icon='INFO')
        layout.operator("carrara.reconstruct", icon='MESH_ICOSPHERE')
        training = layout.column(heading="Training")
        training.prop(settings, "iterations")
        training.prop(settings, "device")
        offered = gpus_offered(backend_gpus())
        if offered > 1:
            training.prop(settings, "gpus", text=f"GPUs (of {offered})")
        training.prop(settings, "downscale")
        training.prop(settings, "send_photos")
        previews = layout.column(heading="Previews")
        previews.prop(settings, "preview_every_s")
        previews.prop(settings, "preview_resolution")
        asset = layout.column(heading="Final Mesh")
        asset.prop(settings, "mesh_resolution")
        asset.prop(settings, "decimate_faces")
        asset.prop(settings, "remove_floaters")
        asset.prop(settings, "vertex_colors")
        row = asset.row(align=True)
        row.prop(settings, "texture")
        sub = row.row()
        sub.enabled = settings.texture
        sub.prop(settings, "texture_size", text="")
        row = asset.row(align=True)
        row.prop(settings, "export_ply")
        row.prop(settings, "export_glb")


CLASSES = (CARRARA_PT_reconstruct,)
