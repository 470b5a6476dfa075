"""Reconstruct from the panel: the imported model, its sphere and the run settings become a backend job.

``reconstruct_config`` and ``readiness_problem`` are plain functions (tests and scripts call them); the operators
only report what they say.
"""
from __future__ import annotations

import functools
from typing import Any

import bpy

from ...shared.dataset_files import dataset_files
from ...shared.dataset_source import UNDISTORT_FIRST
from ...shared.jobs import config_from_json
from ..client.keep_alive import ensure_connected
from ..client.launches import launch_job, submit_job
from ..client.runtime import runtime
from ..properties.run_settings import gpus_to_submit
from ..properties.runs import UPLOADING
from .reporting import report_outcome


def readiness_problem(scene: bpy.types.Scene) -> str | None:
    """Why the scene cannot be reconstructed yet, in words that say what to do; None when it can."""
    recon = scene.carrara.reconstruction
    if not recon.has_capture:
        return "Import a COLMAP model first (File > Import > COLMAP)"
    if not recon.undistorted:
        return f"The model's cameras ({recon.camera_models}) have lens distortion: {UNDISTORT_FIRST}"
    if not recon.images_dir and recon.source_format == "COLMAP":
        return f"The photos of {recon.model_path} were not found: put them in an images/ folder beside the model"
    return None


def backend_gpus() -> int | None:
    """GPUs one job may train on at the connected backend; None while no backend has said."""
    connection = runtime().connection
    return connection.job_gpus if connection is not None else None


def reconstruct_config(scene: bpy.types.Scene) -> dict[str, Any]:
    """The ``reconstruct`` job config of this scene's reconstruction, sphere and settings, validated."""
    recon, settings = scene.carrara.reconstruction, scene.carrara.settings
    config = {
        "dataset": {"path": bpy.path.abspath(recon.model_path)},
        "sphere_center": [float(v) for v in recon.sphere_center],
        "sphere_radius": float(recon.sphere_radius),
        "scene_type": recon.scene_type,
        "preset": settings.preset,
        "iterations": settings.iterations or None,
        "device": settings.device,
        "gpus": gpus_to_submit(settings.gpus, backend_gpus()),
        "downscale": float(settings.downscale),
        "preview_every_s": float(settings.preview_every_s),
        "preview_resolution": settings.preview_resolution,
        **settings.asset_json(),
    }
    config_from_json("reconstruct", config)        # the backend would refuse it: say why here and now
    return config


class CARRARA_OT_reconstruct(bpy.types.Operator):
    """Train a surface on the imported photos inside the sphere; previews stream in while it trains"""

    bl_idname = "carrara.reconstruct"
    bl_label = "Reconstruct"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and context.scene.carrara.reconstruction.has_capture

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        problem = readiness_problem(scene)
        if problem:
            self.report({'ERROR'}, problem)
            return {'CANCELLED'}
        return report_outcome(self, lambda: _start_reconstruct(context))


def _start_reconstruct(context: bpy.types.Context) -> str:
    scene = context.scene
    config = reconstruct_config(scene)
    ensure_connected(context)
    run = launch_job(scene, "reconstruct", config,
                     dataset_files=functools.partial(dataset_files, config["dataset"]["path"]),
                     upload_first=scene.carrara.settings.send_photos == "ALWAYS")
    return f"Reconstruction {'uploading' if run.state == UPLOADING else 'submitted'}"


class CARRARA_OT_extract_again(bpy.types.Operator):
    """Make the final mesh again from this run's latest checkpoint with the current asset settings"""

    bl_idname = "carrara.extract_again"
    bl_label = "Extract Mesh"

    job_id: bpy.props.StringProperty(name="Job")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.carrara.settings
        config = {"source_job_id": self.job_id, "device": settings.device, **settings.asset_json()}

        def submit() -> str:
            config_from_json("extract", config)
            ensure_connected(context)
            submit_job(context.scene, "extract", config)
            return f"Extraction from {self.job_id} submitted"
        return report_outcome(self, submit)


CLASSES = (CARRARA_OT_reconstruct, CARRARA_OT_extract_again)
