"""New from photos or video… (the Carrara panel and File > Import): pick a folder of photos or a video, and the
backend's ``prepare`` job makes the undistorted dataset that is then imported like any COLMAP model.

Blender never waits: the operator sends the request and returns; the pump follows the stages (frames, features,
matching, mapping, undistortion) in the run's progress and imports the result when the job finishes
(``prepare_import``). ``capture_source``, ``prepare_config`` and ``start_prepare`` are plain functions tests call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.types import Scene

from ..shared.jobs import PREPARE_PHOTO_SUFFIXES, PREPARE_VIDEO_SUFFIXES, PrepareConfig, config_from_json
from ..shared.protocol import ProtocolError
from . import pump
from .backend_process import is_local_address
from .connection import NotConnectedError
from .ops_reconstruct import _ensure_connected
from .preferences import backend_settings
from .props_runs import RunProperties

OUTPUT_SUFFIX = "_carrara"          # the dataset goes beside the capture: "garden/" -> "garden_carrara/"


def capture_source(picked: Path) -> Path:
    """What the artist picked, as the backend reads it: a video file, or the folder of a picked photo."""
    if picked.is_file() and picked.suffix.lower() in PREPARE_PHOTO_SUFFIXES:
        return picked.parent
    return picked


def dataset_folder(source: Path) -> Path:
    """Where the prepared dataset goes: beside the capture, named after it."""
    stem = source.stem if source.is_file() else source.name
    return source.parent / f"{stem}{OUTPUT_SUFFIX}"


def prepare_config(source: Path, output: Path, frames: int, max_side: int) -> dict[str, Any]:
    """The validated ``prepare`` config (the backend would refuse a bad one: say why here and now)."""
    config = {"dataset": {"path": str(source)}, "output_path": str(output), "frames": frames, "max_side": max_side}
    config_from_json("prepare", config)
    return config


def start_prepare(context: bpy.types.Context, picked: Path, frames: int, max_side: int) -> RunProperties:
    """Submit the job for ``picked`` to the scene and remember where its dataset will be; raises ValueError (or
    NotConnectedError) naming the problem."""
    source = capture_source(picked)
    if not source.exists():
        raise ValueError(f"{source} does not exist: pick a folder of photos or a video")
    address = backend_settings(context).address
    if not is_local_address(address):
        raise ValueError(f"the backend at {address} is on another machine and cannot read {source}: run "
                         "'carrara-backend prepare' there, then import its dataset")
    output = dataset_folder(source)
    config = prepare_config(source, output, frames, max_side)
    _ensure_connected(context)
    run = pump.submit_job(context.scene, "prepare", config)
    run.dataset_path = str(output)
    return run


class CARRARA_OT_new_from_capture(bpy.types.Operator):
    """Make a reconstruction from a folder of photos or a video: Structure-from-Motion runs in the backend, then
    the points, cameras and sphere are imported"""

    bl_idname = "carrara.new_from_capture"
    bl_label = "New from Photos or Video…"
    bl_options = {"REGISTER"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(
        default=";".join(f"*{suffix}" for suffix in PREPARE_VIDEO_SUFFIXES + PREPARE_PHOTO_SUFFIXES),
        options={"HIDDEN"})
    frames: bpy.props.IntProperty(name="Frames from a video", default=PrepareConfig.frames, min=3, max=5000,
                                  description="How many frames to take from a video: the sharpest of evenly "
                                              "spaced stretches")
    max_side: bpy.props.IntProperty(name="Longest side", default=PrepareConfig.max_side, min=160, max=8192,
                                    subtype="PIXEL", description="Larger photos and frames are scaled down to this")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        picked = Path(bpy.path.abspath(self.filepath or self.directory))   # a folder picked alone ends in "/"
        try:
            run = start_prepare(context, picked, self.frames, self.max_side)
        except ProtocolError as exc:
            self.report({"ERROR"}, exc.message)
            return {"CANCELLED"}
        except (NotConnectedError, OSError, ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Preparing {capture_source(picked).name}: the dataset goes to {run.dataset_path}")
        return {"FINISHED"}


def active_prepare_run(scene: Scene) -> RunProperties | None:
    """The newest prepare run of ``scene`` that is still on its way, for the panel's progress line."""
    for run in reversed(scene.carrara.runs):
        if run.kind == "prepare" and not run.dataset_imported and not run.error and \
                run.state not in ("failed", "cancelled", "missing"):
            return run
    return None


def _import_menu(self, context):
    self.layout.operator(CARRARA_OT_new_from_capture.bl_idname, text="Photos or Video (Carrara)")


CLASSES = (CARRARA_OT_new_from_capture,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(_import_menu)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(_import_menu)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
