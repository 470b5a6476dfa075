"""``Scene.carrara.settings``: how the next reconstruction runs and what asset it delivers, saved in the .blend."""
from __future__ import annotations

import bpy

from ...shared.jobs import MAX_GPUS, PRESET_INFO, AssetSettings, ReconstructConfig

_ASSET = AssetSettings()
_RUN = ReconstructConfig()

PRESET_ITEMS = [(info.name, info.label, info.description) for info in PRESET_INFO]
DEVICE_ITEMS = [("auto", "Auto", "The GPU when the backend has one, else the CPU"),
                ("cuda", "GPU", "Fail rather than train on the CPU"), ("cpu", "CPU", "Train on the CPU (slow)")]
SEND_ITEMS = [("AUTO", "When Needed", "Send the photos only if the backend cannot read their folder"),
              ("ALWAYS", "Always", "Upload the photos even if the backend might see the folder")]


class ReconstructSettings(bpy.types.PropertyGroup):
    """The artist's choices for the next run; defaults come from the job config's."""

    preset: bpy.props.EnumProperty(name="Quality", items=PRESET_ITEMS, default=_RUN.preset)
    iterations: bpy.props.IntProperty(name="Iterations", default=0, min=0,
                                      description="Training iterations; 0 uses the quality preset's")
    device: bpy.props.EnumProperty(name="Device", items=DEVICE_ITEMS, default=_RUN.device)
    gpus: bpy.props.IntProperty(name="GPUs", default=_RUN.gpus, min=1, max=MAX_GPUS,
                                description="GPUs of the backend's host to train this run on together (rays split "
                                            "across them); offered when the backend has more than one")
    downscale: bpy.props.FloatProperty(name="Downscale", default=_RUN.downscale, min=1.0, soft_max=8.0,
                                       description="Train on photos shrunk by this factor (faster, less detail)")
    preview_every_s: bpy.props.FloatProperty(
        name="Preview Every", default=_RUN.preview_every_s, min=0.0, soft_max=120.0, subtype='TIME_ABSOLUTE',
        unit='TIME_ABSOLUTE', description="Seconds between streamed preview meshes; 0 turns previews off")
    preview_resolution: bpy.props.IntProperty(name="Preview Resolution", default=_RUN.preview_resolution,
                                              min=16, max=1024, description="Cells across the sphere for previews")
    mesh_resolution: bpy.props.IntProperty(name="Resolution", default=_ASSET.mesh_resolution, min=32, max=4096,
                                           description="Marching-cubes cells across the sphere for the final mesh")
    decimate_faces: bpy.props.IntProperty(name="Face Budget", default=_ASSET.decimate_faces, min=0,
                                          description="Decimate the final mesh to this many faces; 0 keeps all")
    vertex_colors: bpy.props.BoolProperty(name="Vertex Colours", default=_ASSET.vertex_colors)
    texture: bpy.props.BoolProperty(name="UV Texture", default=_ASSET.texture,
                                    description="Unwrap the mesh and bake the colour field into a PNG")
    texture_size: bpy.props.IntProperty(name="Texture Size", default=_ASSET.texture_size, min=64, max=16384)
    remove_floaters: bpy.props.BoolProperty(name="Remove Floaters", default=_ASSET.remove_floaters,
                                            description="Keep the main surface, drop small disconnected pieces")
    export_ply: bpy.props.BoolProperty(name="PLY", default="ply" in _ASSET.export_formats)
    export_glb: bpy.props.BoolProperty(name="glTF", default="glb" in _ASSET.export_formats)
    send_photos: bpy.props.EnumProperty(name="Send Photos", items=SEND_ITEMS, default="AUTO")

    def asset_json(self) -> dict:
        """The AssetSettings part of a job config."""
        return {"mesh_resolution": self.mesh_resolution, "decimate_faces": self.decimate_faces,
                "vertex_colors": self.vertex_colors, "texture": self.texture, "texture_size": self.texture_size,
                "remove_floaters": self.remove_floaters,
                "export_formats": [name for name, on in (("ply", self.export_ply), ("glb", self.export_glb)) if on]}


def gpus_offered(backend_gpus: int | None) -> int:
    """The most GPUs a run may ask for: the backend's, when it has several; 1 (no choice to show) otherwise."""
    return backend_gpus if backend_gpus is not None and backend_gpus > 1 else 1


def gpus_to_submit(chosen: int, backend_gpus: int | None) -> int:
    """What a submit asks for: the choice, at most the backend's GPUs; before the backend has said how many
    (None), the choice as it is, and the backend judges it."""
    return chosen if backend_gpus is None else min(chosen, gpus_offered(backend_gpus))


CLASSES = (ReconstructSettings,)
