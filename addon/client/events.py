"""What the backend says, applied to the runs: job events, job snapshots, the job list and errors.

The one module that reads message bodies (dicts for now), so giving events a typed shape touches only this file.
"""
from __future__ import annotations

from typing import Any

from ...shared.dataset_manifest import MANIFEST_KIND
from ...shared.protocol import ArtifactRef, ErrorCode, EventKind, JobState, Message, MessageType, ProtocolError
from ..properties.runs import MISSING, UNKNOWN, BackendStatusProperties, RunProperties
from . import job_files
from .dataset_delivery import remember_dataset_manifest
from .launches import start_upload
from .mesh_delivery import MESH_EVENTS, fetch_mesh
from .runs import find_run, submitted_run
from .runtime import runtime


def apply_message(message: Message, status: BackendStatusProperties) -> None:
    runtime().dirty = True
    if message.type == MessageType.EVENT:
        run = find_run(message.job_id or "")
        if run is not None:
            _apply_event(run, message.job_id, message.body)
    elif message.type == MessageType.JOB:
        snapshot = message.body.get("job") or {}
        run = find_run(snapshot.get("job_id", "")) or submitted_run(message.request_id)
        if run is not None:
            _apply_snapshot(run, snapshot)
    elif message.type == MessageType.JOBS:
        others = 0
        for snapshot in message.body.get("jobs") or ():
            run = find_run(snapshot.get("job_id", ""))
            if run is None:
                others += 1
            else:
                _apply_snapshot(run, snapshot)
        status.other_jobs = others + max(0, int(message.body.get("total", 0)) - len(message.body.get("jobs") or ()))
    elif message.type == MessageType.ERROR:
        _apply_error(message, status)


def _apply_error(message: Message, status: BackendStatusProperties) -> None:
    text = str(message.body.get("message", "the backend reported an error"))
    run = submitted_run(message.request_id)
    launch = runtime().launches.get(run.name) if run is not None else None
    if launch is not None and message.body.get("code") == ErrorCode.NEEDS_UPLOAD and launch.upload is None:
        start_upload(run, launch)     # the backend cannot see the folder: send the files instead
        return
    if run is not None:               # the submit was refused: the run never became a job
        run.state, run.error = JobState.FAILED, text
        return
    run = find_run(message.job_id or "")
    if run is not None and message.body.get("code") == "no_such_job":
        run.state, run.reason = MISSING, "the backend does not know this job (another backend, or its workspace " \
                                         "was cleared)"
        return
    status.last_error = f"{message.job_id + ': ' if message.job_id else ''}{text}"


def _apply_snapshot(run: RunProperties, snapshot: dict[str, Any]) -> None:
    job_id = str(snapshot.get("job_id", ""))
    if not run.job_id:
        run.job_id = run.name = job_id
    run.kind = str(snapshot.get("kind", run.kind))
    run.state = str(snapshot.get("state", run.state))
    run.reason = str(snapshot.get("reason", ""))
    if snapshot.get("progress"):
        _apply_progress(run, snapshot["progress"])
    error = snapshot.get("error")
    run.error = str(error.get("message", "")) if error else ""
    run.traceback = str(error.get("traceback", "")) if error else ""
    for kind, ref in (snapshot.get("artifacts") or {}).items():
        _apply_artifact(run, job_id, kind, ref)


def _apply_event(run: RunProperties, job_id: str, body: dict[str, Any]) -> None:
    kind = body.get("event")
    if kind == EventKind.STATE:
        run.state, run.reason = str(body.get("state", run.state)), str(body.get("reason", ""))
        if run.state in JobState.ACTIVE:
            run.error = run.traceback = ""
    elif kind == EventKind.PROGRESS:
        _apply_progress(run, body)
    elif kind == EventKind.LOG:
        run.last_log = str(body.get("line", ""))
    elif kind == EventKind.ERROR:
        run.error, run.traceback = str(body.get("message", "")), str(body.get("traceback") or "")
    elif kind in (*MESH_EVENTS, EventKind.ARTIFACT):
        ref = body.get("artifact") or {}
        _apply_artifact(run, job_id, ref.get("kind", kind) if kind == EventKind.ARTIFACT else kind, ref)


def _apply_progress(run: RunProperties, progress: dict[str, Any]) -> None:
    def number(name: str) -> float:
        value = progress.get(name)
        return UNKNOWN if value is None else float(value)

    run.iteration, run.total = int(progress.get("iteration", 0)), int(progress.get("total", 0))
    run.progress = float(progress.get("fraction", 0.0))
    run.phase = str(progress.get("phase", ""))
    run.loss, run.psnr, run.rate, run.eta_s = number("loss"), number("psnr"), number("rate"), number("eta_s")


def _apply_artifact(run: RunProperties, job_id: str, kind: str, ref_json: Any) -> None:
    try:
        ref = ArtifactRef.from_json(ref_json)
    except ProtocolError as exc:
        run.error = f"the backend announced an unusable artifact: {exc.message}"
        return
    if kind in job_files.RESULT_KINDS:
        job_files.remember_result(run, ref)
    elif kind == MANIFEST_KIND:
        remember_dataset_manifest(run, ref)
    elif kind in MESH_EVENTS:
        fetch_mesh(run, job_id, kind, ref)
    else:
        run.report_artifact = ref.name
