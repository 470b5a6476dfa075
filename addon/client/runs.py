"""The scene's runs as the client finds them: looked up afresh each time (references to collection items do not
last), and which of their jobs are still worth hearing about."""
from __future__ import annotations

import bpy

from ...shared.protocol import JobState
from ..properties.runs import MISSING, SUBMITTING, RunProperties
from ..scene.prepared_dataset import awaits_dataset
from .runtime import runtime


def find_run(job_id: str) -> RunProperties | None:
    """The run of ``job_id`` in any scene."""
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.job_id == job_id:
                return run
    return None


def existing_run(job_id: str) -> RunProperties:
    run = find_run(job_id)
    if run is None:
        raise ValueError(f"no run of job {job_id!r} in this file")
    return run


def run_named(name: str) -> RunProperties | None:
    for scene in bpy.data.scenes:
        run = scene.carrara.runs.get(name)
        if run is not None:
            return run
    return None


def submitted_run(request_id: str | None) -> RunProperties | None:
    """The run still waiting for the reply to the submit ``request_id``."""
    if not request_id:
        return None
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.state == SUBMITTING and run.name == request_id:
                return run
    return None


def followed_job_ids() -> list[str]:
    """Jobs worth hearing about: not over yet, or over without their final mesh delivered."""
    over = {JobState.FAILED, JobState.CANCELLED, MISSING}
    return sorted({run.job_id for scene in bpy.data.scenes for run in scene.carrara.runs
                   if run.job_id and run.state not in over and
                   not (run.state == JobState.FINISHED and (run.final_artifact or run.kind != "reconstruct") and
                        not awaits_dataset(run))})


def abandon_unanswered_submits() -> None:
    """Submits whose reply can no longer come (the connection dropped): say so instead of waiting forever."""
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.state == SUBMITTING:
                run.state = MISSING
                run.reason = "the connection dropped before the backend answered; refresh the jobs or submit again"
                runtime().dirty = True
