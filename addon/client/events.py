"""What the backend says, applied to the runs: job events, job snapshots, the job list and errors.

The one module that reads message bodies. Job events and the progress and error inside a job snapshot are read
through shared.protocol's typed records, the same ones the backend writes them with.
"""
from __future__ import annotations

from typing import Any

from ...shared.dataset_manifest import MANIFEST_KIND
from ...shared.protocol import (ArtifactEvent, ArtifactRef, ErrorCode, ErrorEvent, JobState, LogEvent, Message,
                                MessageType, ProgressEvent, ProtocolError, StateEvent, read_event)
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
    error = snapshot.get("error")
    try:
        if snapshot.get("progress"):
            _apply_progress(run, ProgressEvent.from_json(snapshot["progress"]))
        error = ErrorEvent.from_json(error) if error else None
    except ProtocolError as exc:
        run.error = f"the backend sent an unusable job record: {exc.message}"
        return
    run.error, run.traceback = (error.message, error.traceback) if error else ("", "")
    for kind, ref in (snapshot.get("artifacts") or {}).items():
        _apply_artifact(run, job_id, kind, ref)


def _apply_event(run: RunProperties, job_id: str, body: dict[str, Any]) -> None:
    try:
        record = read_event(body)
    except ProtocolError as exc:
        run.error = f"the backend sent an unusable event: {exc.message}"
        return
    if isinstance(record, StateEvent):
        run.state, run.reason = record.state, record.reason
        if run.state in JobState.ACTIVE:
            run.error = run.traceback = ""
    elif isinstance(record, ProgressEvent):
        _apply_progress(run, record)
    elif isinstance(record, LogEvent):
        run.last_log = record.line
    elif isinstance(record, ErrorEvent):
        run.error, run.traceback = record.message, record.traceback
    elif isinstance(record, ArtifactEvent):
        _use_artifact(run, job_id, record.artifact_kind, record.artifact)


def _apply_progress(run: RunProperties, progress: ProgressEvent) -> None:
    def number(value: float | None) -> float:
        return UNKNOWN if value is None else value

    run.iteration, run.total, run.progress, run.phase = (progress.iteration, progress.total, progress.fraction,
                                                         progress.phase)
    run.loss, run.psnr = number(progress.loss), number(progress.psnr)
    run.rate, run.eta_s = number(progress.rate), number(progress.eta_s)


def _apply_artifact(run: RunProperties, job_id: str, kind: str, ref_json: Any) -> None:
    """An artifact of a job snapshot (its kind is the key it is listed under)."""
    try:
        ref = ArtifactRef.from_json(ref_json)
    except ProtocolError as exc:
        run.error = f"the backend announced an unusable artifact: {exc.message}"
        return
    _use_artifact(run, job_id, kind, ref)


def _use_artifact(run: RunProperties, job_id: str, kind: str, ref: ArtifactRef) -> None:
    if kind in job_files.RESULT_KINDS:
        job_files.remember_result(run, ref)
    elif kind == MANIFEST_KIND:
        remember_dataset_manifest(run, ref)
    elif kind in MESH_EVENTS:
        fetch_mesh(run, job_id, kind, ref)
    else:
        run.report_artifact = ref.name
