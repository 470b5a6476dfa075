"""Runs on their way to becoming jobs: submitted with their dataset's folder, or uploading the dataset first when
the backend cannot see that folder (or the artist asked to send the photos)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import bpy

from ...shared.protocol import JobState
from ..properties.runs import SUBMITTING, UPLOADING, RunProperties
from .connection import Connection
from .keep_alive import current_connection
from .runs import run_named
from .runtime import Launch, runtime, set_if_changed
from .transfers import DatasetUpload, TransferState


def submit_job(scene: bpy.types.Scene, kind: str, config: dict[str, Any]) -> RunProperties:
    """Submit a job and add its run to ``scene`` at once (state "submitting" until the backend answers)."""
    connection = current_connection()
    run = _new_run(scene, kind)
    run.name, run.state = connection.submit(kind, config), SUBMITTING
    return run


def launch_job(scene: bpy.types.Scene, kind: str, config: dict[str, Any], *,
               dataset_files: Callable[[], dict[str, Path]], upload_first: bool = False,
               upload_config: dict[str, Any] | None = None) -> RunProperties:
    """Start a job on ``scene``'s dataset: submitted with the dataset's folder, unless ``upload_first`` or the
    backend answers that it cannot see that folder; then the files listed by ``dataset_files`` are uploaded
    (content-hashed, so only what the backend lacks travels) and the job is submitted naming the upload, with
    ``upload_config`` instead of ``config`` when given (e.g. without a folder on the artist's disk to write)."""
    connection = current_connection()
    launch = Launch(kind, dict(config), dataset_files, upload_config=upload_config)
    run = _new_run(scene, kind)
    if upload_first:
        run.name = f"upload-{id(launch):x}"
        start_upload(run, launch)
    else:
        run.name, run.state = connection.submit(kind, launch.config), SUBMITTING
    runtime().launches[run.name] = launch
    return run


def _new_run(scene: bpy.types.Scene, kind: str) -> RunProperties:
    """A run remembering where its meshes go: the capture imported in ``scene`` when it started."""
    run = scene.carrara.runs.add()
    run.kind = kind
    capture = scene.carrara.reconstruction
    run.root_empty_name, run.collection_name = capture.root_empty_name, capture.collection_name
    runtime().dirty = True
    return run


def start_upload(run: RunProperties, launch: Launch) -> None:
    launch.upload = DatasetUpload(launch.files)
    run.state, run.phase, run.progress, run.error = UPLOADING, "upload", 0.0, ""


def step_launches(connection: Connection) -> None:
    """Advance each upload; a finished one is submitted naming it, and its run waits for the reply."""
    launches = runtime().launches
    for key, launch in list(launches.items()):
        run = run_named(key)
        if run is None or run.job_id or run.state not in (SUBMITTING, UPLOADING):
            del launches[key]            # became a job, failed, or its scene is gone
            continue
        upload = launch.upload
        if run.state != UPLOADING or upload is None:
            continue
        upload.step(connection)
        set_if_changed(run, "progress", upload.fraction)
        if upload.state == TransferState.FAILED:
            run.state, run.error = JobState.FAILED, upload.error
        elif upload.state == TransferState.DONE:
            launch.config = {**(launch.upload_config or launch.config), "dataset": {"upload_id": upload.upload_id}}
            del launches[key]
            run.name, run.state, run.phase = connection.submit(launch.kind, launch.config), SUBMITTING, ""
            launches[run.name] = launch
        runtime().dirty = True
