"""A job's files on the artist's side: its final PLY and glTF saved to a folder they choose, its whole log in a text
block they can read and copy, and finished jobs removed from the backend and the panel.

Everything here runs on Blender's main thread, from operators or from the pump's tick (``step``): downloads are
the resumable, SHA-256-checked ``ArtifactDownload``s meshes use, the log is pulled in chunks by ``LogDownload``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import bpy

from ...shared.protocol import ArtifactRef, Message, MessageType, ProtocolError
from .connection import Connection
from ..properties.runs import RunProperties
from .transfers import ArtifactDownload, LogDownload, TransferState, step_transfers

#: Artifact kinds that are the job's result files (the glTF carries the texture inside it).
RESULT_KINDS = ("ply", "glb", "texture")
RESULTS_FOLDER = "carrara_results"

FindRun = Callable[[str], "RunProperties | None"]


@dataclass
class JobFiles:
    """Transfers in flight (they cannot be saved in a .blend)."""

    results: dict[tuple[str, str], ArtifactDownload] = field(default_factory=dict)   # (job, name) -> download
    logs: dict[str, LogDownload] = field(default_factory=dict)                       # job -> download


def remember_result(run: RunProperties, ref: ArtifactRef) -> None:
    """Keep the newest file of each result kind on the run, so it can be saved later, even after a reopen."""
    refs = _results(run)
    refs[ref.kind] = ref.to_json()
    run.results_json = json.dumps(refs, sort_keys=True)


def result_refs(run: RunProperties) -> list[ArtifactRef]:
    refs = []
    for data in _results(run).values():
        try:
            refs.append(ArtifactRef.from_json(data))
        except ProtocolError:
            continue
    return sorted(refs, key=lambda ref: ref.name)


def _results(run: RunProperties) -> dict:
    try:
        data = json.loads(run.results_json or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def default_results_folder(job_id: str) -> Path:
    """Beside the .blend (``//carrara_results/<job>``), or in the home folder for a file never saved."""
    base = Path(bpy.path.abspath("//")) if bpy.data.filepath else Path.home()
    return base / RESULTS_FOLDER / job_id


def save_results(files: JobFiles, run: RunProperties, folder: Path) -> list[Path]:
    """Start fetching the run's result files into ``folder``; a file already there whole is kept, a partial one
    continues. The paths the files will have."""
    refs = result_refs(run)
    if not refs:
        raise ValueError(f"job {run.job_id} has announced no result files (PLY, glTF) yet")
    paths = []
    for ref in refs:
        if Path(ref.name).name != ref.name:
            raise ValueError(f"the backend named a result file {ref.name!r}; it must be a plain file name")
        path = Path(folder) / ref.name
        files.results[(run.job_id, ref.name)] = ArtifactDownload(run.job_id, ref, path)
        paths.append(path)
    run.results_folder, run.results_note = str(folder), f"saving {len(refs)} file(s)"
    return paths


def show_log(files: JobFiles, run: RunProperties) -> None:
    """Fetch the job's whole log; it lands in a text block when complete."""
    files.logs[run.job_id] = LogDownload(run.job_id)


def log_text_name(job_id: str) -> str:
    return f"Carrara {job_id} log"


def step(files: JobFiles, connection: Connection, find_run: FindRun) -> bool:
    """Advance the transfers; finished ones land on their runs. True when a run changed."""
    changed = False
    for _, download in step_transfers(files.results, connection):
        run = find_run(download.job_id)
        if run is not None:
            pending = sum(1 for job, _ in files.results if job == download.job_id)
            run.results_note = (download.error if download.state == TransferState.FAILED else
                                f"saved to {run.results_folder}" if not pending else f"saving {pending} more file(s)")
            changed = True
    for job_id, download in step_transfers(files.logs, connection):
        run = find_run(job_id)
        if run is None:
            continue
        if download.state == TransferState.FAILED:
            run.error = download.error
        else:
            name = log_text_name(job_id)
            text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
            text.from_string(download.text)
            run.log_text = name
        changed = True
    return changed


def copy_log(run: RunProperties, window_manager: bpy.types.WindowManager) -> int:
    """Put the job's fetched log on the clipboard; the number of characters copied."""
    text = bpy.data.texts.get(run.log_text) if run.log_text else None
    if text is None:
        raise ValueError(f"the log of job {run.job_id} has not been fetched yet: press Log first")
    content = text.as_string()
    window_manager.clipboard = content
    return len(content)


def remove_job(connection: Connection, run: RunProperties, find_run: FindRun) -> str:
    """Ask the backend to delete the job and its files; the run leaves the panel once it agrees."""
    job_id = run.job_id

    def on_reply(reply: Message) -> None:
        current = find_run(job_id)
        if current is None:
            return
        if reply.type == MessageType.ERROR:
            current.error = str(reply.body.get("message", "the backend refused to remove the job"))
        else:
            _forget_run(job_id)

    return connection.request(MessageType.DELETE_JOB, job_id=job_id, on_reply=on_reply)


def prune_jobs(connection: Connection, older_than_days: float) -> str:
    """Ask the backend to remove this client's finished, failed and cancelled jobs older than that; their runs
    leave the panel."""
    def on_reply(reply: Message) -> None:
        if reply.type == MessageType.PRUNED:
            for job_id in reply.body.get("jobs") or ():
                _forget_run(str(job_id))

    return connection.request(MessageType.PRUNE, {"older_than_days": older_than_days}, on_reply=on_reply)


def _forget_run(job_id: str) -> None:
    for scene in bpy.data.scenes:
        runs = scene.carrara.runs
        for index in reversed(range(len(runs))):
            if runs[index].job_id == job_id:
                runs.remove(index)
