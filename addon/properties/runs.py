"""What the add-on remembers of each backend job (``Scene.carrara.runs``) and of the backend itself.

Runs are saved in the .blend so a reopened file re-attaches to its jobs; they hold object NAMES, never object
references, because undo and file loads invalidate references. The backend status lives on the window manager:
it describes this Blender session's connection, is refreshed by the pump, and is not saved with the file.
"""
from __future__ import annotations

import bpy

UNKNOWN = -1.0   # loss/psnr/rate/eta not reported (e.g. a dataset check has no loss)
# Run states of the add-on's own, before or beside the backend's JobState values:
SUBMITTING = "submitting"      # a submit not answered yet
UPLOADING = "uploading"        # the dataset is on its way to a backend that cannot see its folder
MISSING = "missing"            # the backend does not know the job


class RunProperties(bpy.types.PropertyGroup):
    """One job on the backend, as the pump last heard of it."""

    job_id: bpy.props.StringProperty(name="Job", description="The backend's id of this job")
    kind: bpy.props.StringProperty(name="Kind", description="Job kind, e.g. reconstruct or check_dataset")
    state: bpy.props.StringProperty(name="State", default="submitting",
                                    description="queued, running, finished, failed, cancelled or interrupted")
    reason: bpy.props.StringProperty(name="Reason", description="Why the job is in its state")
    phase: bpy.props.StringProperty(name="Phase", description="What the job is doing, e.g. train or check")
    progress: bpy.props.FloatProperty(name="Progress", min=0.0, max=1.0, subtype='FACTOR')
    iteration: bpy.props.IntProperty(name="Iteration", min=0)
    total: bpy.props.IntProperty(name="Total", min=0)
    loss: bpy.props.FloatProperty(name="Loss", default=UNKNOWN, description="Training loss; -1 when not reported")
    psnr: bpy.props.FloatProperty(name="PSNR", default=UNKNOWN, description="dB; -1 when not reported")
    rate: bpy.props.FloatProperty(name="Rate", default=UNKNOWN, description="Iterations per second")
    eta_s: bpy.props.FloatProperty(name="ETA", default=UNKNOWN, description="Seconds left; -1 when unknown")
    last_log: bpy.props.StringProperty(name="Last log line")
    error: bpy.props.StringProperty(name="Error", description="The last error the backend reported")
    traceback: bpy.props.StringProperty(name="Traceback", description="The backend's traceback of that error")
    preview_artifact: bpy.props.StringProperty(name="Preview artifact", description="Latest preview mesh file")
    final_artifact: bpy.props.StringProperty(name="Final artifact", description="Final mesh file")
    report_artifact: bpy.props.StringProperty(name="Report artifact", description="Latest other file, e.g. a report")
    root_empty_name: bpy.props.StringProperty(
        name="Root Empty", description="The reconstruction's root Empty the run's meshes are parented to")
    collection_name: bpy.props.StringProperty(name="Collection", description="Where the run's meshes are put")
    preview_object: bpy.props.StringProperty(name="Preview object", description="Name of the preview mesh object")
    final_object: bpy.props.StringProperty(name="Final object", description="Name of the final mesh object")
    results_json: bpy.props.StringProperty(
        name="Results", description="The job's final files (PLY, glTF, texture) as the backend announced them (JSON)")
    results_folder: bpy.props.StringProperty(name="Results folder", subtype='DIR_PATH',
                                             description="Where the job's final files were saved")
    results_note: bpy.props.StringProperty(name="Results", description="How saving the final files goes")
    log_text: bpy.props.StringProperty(name="Log text", description="The text block holding the job's whole log")
    dataset_path: bpy.props.StringProperty(name="Dataset", description="A prepare run's dataset folder")
    dataset_imported: bpy.props.BoolProperty(name="Dataset imported", description="The prepared dataset was imported")
    dataset_manifest: bpy.props.StringProperty(
        name="Dataset manifest", description="A remote prepare job's list of dataset files to fetch (ArtifactRef JSON)")


class BackendStatusProperties(bpy.types.PropertyGroup):
    """The connection as the panel shows it; written by the pump only."""

    state: bpy.props.StringProperty(name="Connection", default="closed")
    problem: bpy.props.StringProperty(name="Problem", description="Why the add-on is not connected")
    address: bpy.props.StringProperty(name="Address")
    server_version: bpy.props.StringProperty(name="Backend version")
    device: bpy.props.StringProperty(name="Device")
    gpu_name: bpy.props.StringProperty(name="GPU")
    gpu_memory_gb: bpy.props.FloatProperty(name="GPU memory (GB)")
    torch_version: bpy.props.StringProperty(name="torch")
    cuda_version: bpy.props.StringProperty(name="CUDA")
    tinycudann: bpy.props.BoolProperty(name="tiny-cuda-nn")
    job_kinds: bpy.props.StringProperty(name="Job kinds")
    local_backend: bpy.props.StringProperty(name="Local backend", description="The local backend process's state")
    last_error: bpy.props.StringProperty(name="Last error")
    other_jobs: bpy.props.IntProperty(name="Other jobs", description="Jobs on the backend this file does not track")


CLASSES = (RunProperties, BackendStatusProperties)
