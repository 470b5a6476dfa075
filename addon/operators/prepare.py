"""New from photos or video… (the Carrara panel and File > Import): pick a folder of photos or a video, and the
backend's ``prepare`` job makes the undistorted dataset that is then imported like any COLMAP model.

Blender never waits: the operator sends the request and returns; the pump follows the stages (frames, features,
matching, mapping, undistortion) in the run's progress and imports the result when the job finishes
(``scene/prepared_dataset.py``). A backend on this computer reads the capture in place and writes the dataset
beside it; one that cannot read it (another machine, or ``--uploads-only``) is sent the capture through the upload
path, keeps the dataset in its job folder, and the pump fetches it into the dataset folder before importing it
(``client/dataset_delivery.py``).

Undistort for Training… sends the imported COLMAP model (with lens distortion, as COLMAP's defaults leave it) to the
same job, which then only undistorts it; the result comes back and is imported the same way.
``capture_source``, ``prepare_config``, ``start_prepare`` and ``start_undistort`` are plain functions tests call.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import bpy
from bpy.types import Scene

from ...shared.dataset_files import dataset_files
from ...shared.jobs import PREPARE_PHOTO_SUFFIXES, PREPARE_VIDEO_SUFFIXES, PrepareConfig, config_from_json
from ..client.backend_process import is_local_address
from ..client.dataset_fetch import check_destination
from ..client.keep_alive import ensure_connected
from ..client.launches import launch_job
from ..preferences import backend_settings
from ..properties.runs import UPLOADING, RunProperties
from .reporting import report_outcome

OUTPUT_SUFFIX = "_carrara"          # the dataset goes beside the capture: "garden/" -> "garden_carrara/"
DATASETS_FOLDER = "carrara_datasets"   # a remote backend's dataset is fetched to //carrara_datasets/<name>
UNDISTORTED_SUFFIX = "_undistorted"     # an undistorted model goes beside it: "garden/" -> "garden_undistorted/"


def capture_source(picked: Path) -> Path:
    """What the artist picked, as the backend reads it: a video file, or the folder of a picked photo."""
    if picked.is_file() and picked.suffix.lower() in PREPARE_PHOTO_SUFFIXES:
        return picked.parent
    return picked


def _capture_name(source: Path) -> str:
    return source.stem if source.is_file() else source.name


def dataset_folder(source: Path) -> Path:
    """Where a local backend writes the prepared dataset: beside the capture, named after it."""
    return source.parent / f"{_capture_name(source)}{OUTPUT_SUFFIX}"


def remote_dataset_folder(source: Path) -> Path:
    """Where a remote backend's dataset is fetched to: ``//carrara_datasets/<name>`` beside the .blend, or in the
    home folder for a file never saved."""
    base = Path(bpy.path.abspath("//")) if bpy.data.filepath else Path.home()
    return base / DATASETS_FOLDER / _capture_name(source)


def capture_files(source: Path) -> dict[str, Path]:
    """The capture as an upload lists it: the video file, or the folder's photos, by name."""
    if source.is_file():
        return {source.name: source}
    return {p.name: p for p in sorted(source.iterdir()) if p.is_file() and p.suffix.lower() in PREPARE_PHOTO_SUFFIXES}


def model_workspace(model_path: Path) -> Path:
    """The folder an artist calls the model: the workspace above ``sparse/`` and ``sparse/<n>/``."""
    folder = model_path.parent if model_path.is_file() else model_path
    while folder.name.isdigit() or folder.name == "sparse":
        folder = folder.parent
    return folder


def undistorted_folder(model_path: Path) -> Path:
    """Where an undistorted model goes by default: beside its workspace, named after it."""
    workspace = model_workspace(model_path)
    return workspace.parent / f"{workspace.name}{UNDISTORTED_SUFFIX}"


def prepare_config(source: Path, output: Path | None, **settings: Any) -> dict[str, Any]:
    """The validated ``prepare`` config (the backend would refuse a bad one: say why here and now); without
    ``output`` the dataset stays in the job's folder on the backend, to be fetched. ``settings``: PrepareConfig
    fields beside the defaults (frames, max_side)."""
    config = {"dataset": {"path": str(source)}, **settings}
    if output is not None:
        config["output_path"] = str(output)
    config_from_json("prepare", config)
    return config


def start_prepare(context: bpy.types.Context, picked: Path, frames: int, max_side: int,
                  folder: Path | None = None) -> RunProperties:
    """Start the job for ``picked`` and remember where its dataset lands on this disk (``folder``, else the
    default for the backend's place); raises ValueError (or NotConnectedError) naming the problem."""
    source = capture_source(picked)
    if not source.exists():
        raise ValueError(f"{source} does not exist: pick a folder of photos or a video")
    remote = _remote(context)
    output = folder or (remote_dataset_folder(source) if remote else dataset_folder(source))
    return _launch_prepare(context, source, output, functools.partial(capture_files, source), frames=frames,
                           max_side=max_side)


def start_undistort(context: bpy.types.Context, folder: Path | None = None) -> RunProperties:
    """Start the job that undistorts the scene's imported COLMAP model into ``folder`` (default: beside it, see
    ``undistorted_folder``); a remote backend is sent the model and its photos as any dataset is."""
    recon = context.scene.carrara.reconstruction
    if not recon.has_capture or recon.source_format != "COLMAP":
        raise ValueError("Import a COLMAP model first (File > Import > COLMAP): only a COLMAP model is undistorted")
    model = Path(bpy.path.abspath(recon.model_path))
    if not model.exists():
        raise ValueError(f"{model} does not exist any more: import the model again")
    return _launch_prepare(context, model, folder or undistorted_folder(model),
                           functools.partial(dataset_files, model))


def _remote(context: bpy.types.Context) -> bool:
    return not is_local_address(backend_settings(context).address)


def _launch_prepare(context: bpy.types.Context, source: Path, output: Path,
                    files: Callable[[], dict[str, Path]], **settings: Any) -> RunProperties:
    """The one prepare submit: read in place by a local backend, uploaded first to a remote one (which keeps the
    dataset for the pump to fetch into ``output``)."""
    check_destination(output)
    local_config = prepare_config(source, output, **settings)
    ensure_connected(context)
    run = launch_job(context.scene, "prepare", local_config, dataset_files=files, upload_first=_remote(context),
                     upload_config=prepare_config(source, None, **settings))
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
    dataset_folder: bpy.props.StringProperty(
        name="Dataset folder", subtype="DIR_PATH", options={"SKIP_SAVE"},
        description="Where the prepared dataset goes on this computer. Empty: beside the capture with a backend "
                    "on this computer, //carrara_datasets/<name> beside the .blend with a remote one")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        picked = Path(bpy.path.abspath(self.filepath or self.directory))   # a folder picked alone ends in "/"
        folder = Path(bpy.path.abspath(self.dataset_folder)) if self.dataset_folder else None

        def start() -> str:
            run = start_prepare(context, picked, self.frames, self.max_side, folder)
            sending = "sending it to the backend; " if run.state == UPLOADING else ""
            return f"Preparing {capture_source(picked).name}: {sending}the dataset goes to {run.dataset_path}"
        return report_outcome(self, start)


class CARRARA_OT_undistort_capture(bpy.types.Operator):
    """Undistort the imported model's photos into a PINHOLE dataset that training accepts (the backend runs only
    the undistortion), then import it"""

    bl_idname = "carrara.undistort_capture"
    bl_label = "Undistort for Training…"
    bl_options = {"REGISTER"}

    dataset_folder: bpy.props.StringProperty(
        name="Dataset folder", subtype="DIR_PATH", options={"SKIP_SAVE"},
        description="Where the undistorted dataset goes on this computer. Empty: <model folder>_undistorted "
                    "beside the model")

    @classmethod
    def poll(cls, context):
        recon = context.scene.carrara.reconstruction if context.scene is not None else None
        return recon is not None and recon.has_capture and recon.source_format == "COLMAP" and not recon.undistorted

    def invoke(self, context, event):
        model = Path(bpy.path.abspath(context.scene.carrara.reconstruction.model_path))
        self.dataset_folder = str(undistorted_folder(model))
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        folder = Path(bpy.path.abspath(self.dataset_folder)) if self.dataset_folder else None

        def start() -> str:
            run = start_undistort(context, folder)
            sending = "sending it to the backend; " if run.state == UPLOADING else ""
            return f"Undistorting the model: {sending}the dataset goes to {run.dataset_path}"
        return report_outcome(self, start)


def active_prepare_run(scene: Scene) -> RunProperties | None:
    """The newest prepare run of ``scene`` that is still on its way, for the panel's progress line."""
    for run in reversed(scene.carrara.runs):
        if run.kind == "prepare" and not run.dataset_imported and not run.error and \
                run.state not in ("failed", "cancelled", "missing"):
            return run
    return None


def import_menu(self, context):
    self.layout.operator(CARRARA_OT_new_from_capture.bl_idname, text="Photos or Video (Carrara)")


CLASSES = (CARRARA_OT_new_from_capture, CARRARA_OT_undistort_capture)
