"""The root of Carrara's per-scene data, ``Scene.carrara``: saved in the .blend, never in module globals."""
from __future__ import annotations

import bpy

from .props_reconstruction import CLASSES as RECONSTRUCTION_CLASSES, ReconstructionProperties
from .props_run_settings import CLASSES as SETTINGS_CLASSES, ReconstructSettings
from .props_runs import CLASSES as RUN_CLASSES, RunProperties


class CarraraSceneProperties(bpy.types.PropertyGroup):
    """Everything Carrara keeps per scene: the imported reconstruction with its sphere, the settings of the next
    run, and the runs."""

    reconstruction: bpy.props.PointerProperty(type=ReconstructionProperties)
    settings: bpy.props.PointerProperty(type=ReconstructSettings)
    runs: bpy.props.CollectionProperty(type=RunProperties)
    active_run_index: bpy.props.IntProperty(name="Active run", default=0, min=0)


CLASSES = (*RECONSTRUCTION_CLASSES, *SETTINGS_CLASSES, *RUN_CLASSES, CarraraSceneProperties)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.Scene.carrara = bpy.props.PointerProperty(type=CarraraSceneProperties)


def unregister() -> None:
    del bpy.types.Scene.carrara
    _unregister_classes()
