"""The properties room: what Carrara keeps, never in module globals. ``Scene.carrara`` is saved in the .blend (the
imported capture, the settings of the next run, the runs); ``WindowManager.carrara_backend`` describes this
session's connection and is not."""
from __future__ import annotations

import bpy

from .capture import CLASSES as CAPTURE_CLASSES, CaptureProperties
from .run_settings import CLASSES as SETTINGS_CLASSES, ReconstructSettings
from .runs import CLASSES as RUN_CLASSES, BackendStatusProperties, RunProperties


class CarraraSceneProperties(bpy.types.PropertyGroup):
    """Everything Carrara keeps per scene: the imported capture with its sphere, the settings of the next run, and
    the runs."""

    # Named "reconstruction" before the capture/Reconstruct run naming: saved files and scripts read it so.
    reconstruction: bpy.props.PointerProperty(type=CaptureProperties)
    settings: bpy.props.PointerProperty(type=ReconstructSettings)
    runs: bpy.props.CollectionProperty(type=RunProperties)
    active_run_index: bpy.props.IntProperty(name="Active run", default=0, min=0)


CLASSES = (*CAPTURE_CLASSES, *SETTINGS_CLASSES, *RUN_CLASSES, CarraraSceneProperties)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.Scene.carrara = bpy.props.PointerProperty(type=CarraraSceneProperties)
    bpy.types.WindowManager.carrara_backend = bpy.props.PointerProperty(type=BackendStatusProperties)


def unregister() -> None:
    del bpy.types.WindowManager.carrara_backend
    del bpy.types.Scene.carrara
    _unregister_classes()
