"""The one client pump: the only code that moves backend news into Blender data, on the main thread.

``pump_tick()`` is a plain function: Blender calls it from a persistent ``bpy.app.timers`` timer (each tick does a
few milliseconds of work), and tests and headless scripts call it directly or through ``process_pending()``
(timers never fire under the bpy module or ``blender -b``). A tick keeps the connection alive, reconnects at a
limited rate, starts or restarts the local backend when the preferences say so, turns events and replies into
``RunProperties`` updates, downloads finished meshes (verified by SHA-256) and hands them to ``on_mesh_ready``.

The socket, the process and the transfers live in ``_runtime`` (they cannot be saved in a .blend); everything
worth keeping is in the scene's runs, which hold job ids and object names, so a reopened file re-attaches.
"""
from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import bpy

from ..shared.dataset_manifest import MANIFEST_KIND
from ..shared.mesh_data import MeshData, MeshFileError
from ..shared.protocol import ArtifactRef, ErrorCode, EventKind, JobState, Message, MessageType, ProtocolError
from . import job_files, scene_mesh
from .dataset_fetch import DatasetFetch
from .prepare_import import awaits_dataset, import_finished_prepares, remember_dataset_manifest, step_dataset_fetches
from .backend_process import LocalBackend, is_local_address, something_listens
from .connection import Connection, ConnectionState, NotConnectedError, load_curve_keys
from .panel_backend import progress_text
from .preferences import ROOT_PACKAGE, BackendSettings, backend_settings
from .props_runs import MISSING, SUBMITTING, UNKNOWN, UPLOADING, BackendStatusProperties, RunProperties
from .transfers import ArtifactDownload, DatasetUpload, TransferState, step_transfers

TICK_BUDGET_S = 0.004
ACTIVE_INTERVAL_S = 0.1
IDLE_INTERVAL_S = 0.5
RECONNECT_INTERVAL_S = 2.0
INCOMPATIBLE_RETRY_S = 30.0
MESH_EVENTS = (EventKind.PREVIEW_MESH, EventKind.FINAL_MESH)


def on_mesh_ready(mesh: MeshData, ref: ArtifactRef, run: RunProperties) -> None:
    """A finished, SHA-256-verified mesh of ``run`` lands in place, under the reconstruction's root Empty.

    A preview replaces the mesh of the run's preview object; the final asset gets its own object with its
    material, and the preview is hidden (not deleted: the artist may have worked on it).
    """
    final = ref.kind == EventKind.FINAL_MESH
    role = "final" if final else "preview"
    label = f"Carrara {run.kind} {run.job_id[-6:]}"
    name = scene_mesh.place_job_mesh(run.job_id, role, f"{label} {'mesh' if final else 'preview'}", mesh,
                                     parent_name=run.root_empty_name or None,
                                     collection_name=run.collection_name or None, with_material=True)
    if final:
        run.final_artifact, run.final_object = ref.name, name
        preview = scene_mesh.find_job_object(run.job_id, "preview")
        if preview is not None:
            preview.hide_set(True)
            preview.hide_render = True
    else:
        run.preview_artifact, run.preview_object = ref.name, name


@dataclass
class _Runtime:
    """What cannot be saved in a .blend: the connection, the local process, transfers in flight."""

    connection: Connection | None = None
    connection_key: tuple[str, str, str] = ("", "", "")
    wanted: bool = False                        # someone asked for a backend, or the file tracks jobs
    file_synced: bool = False                   # the open file's runs have been followed
    last_open: float = -1e9
    local: LocalBackend = field(default_factory=LocalBackend)
    downloads: dict[tuple[str, str], ArtifactDownload] = field(default_factory=dict)   # (job, kind) -> download
    launches: dict[str, "_Launch"] = field(default_factory=dict)                       # run name -> launch
    backlog: list[Message] = field(default_factory=list)      # received while the interface was locked
    files: job_files.JobFiles = field(default_factory=job_files.JobFiles)   # results and logs on their way
    dataset_fetches: dict[str, DatasetFetch] = field(default_factory=dict)   # job -> a prepared dataset on its way
    dirty: bool = False


@dataclass
class _Launch:
    """A run on its way to becoming a job: submitted with its folder, or uploading the dataset first."""

    kind: str
    config: dict[str, Any]
    files: Callable[[], dict[str, Path]]      # lists the dataset's files (run off the main thread)
    upload: DatasetUpload | None = None
    upload_config: dict[str, Any] | None = None   # the config to submit with the upload, when it differs


_runtime = _Runtime()


def runtime() -> _Runtime:
    return _runtime


# --- what operators and scripts call ----------------------------------------------------------------------------
def connect(context: bpy.types.Context | None = None) -> Connection:
    """Connect (or reconnect now) with the current preferences; the pump keeps it alive from then on."""
    _runtime.wanted = True
    _runtime.last_open = -1e9
    _drop_connection()
    _abandon_unanswered_submits()
    _maintain_connection(backend_settings(context), _status(), time.monotonic(), by_hand=True)
    if _runtime.connection is None:
        raise NotConnectedError(_status().problem)
    _show_connection(_status(), _runtime.connection)
    return _runtime.connection


def start_local_backend(context: bpy.types.Context | None = None) -> None:
    """Start the local backend by hand (lifting the restart limit); errors name what to fix."""
    settings = backend_settings(context)
    _runtime.wanted = True
    _runtime.local.start(settings.address, settings.workspace, settings.python, by_hand=True)
    _status().local_backend = _runtime.local.note
    _runtime.last_open = -1e9


def submit_job(scene: bpy.types.Scene, kind: str, config: dict[str, Any]) -> RunProperties:
    """Submit a job and add its run to ``scene`` at once (state "submitting" until the backend answers)."""
    connection = _connection()
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
    connection = _connection()
    launch = _Launch(kind, dict(config), dataset_files, upload_config=upload_config)
    run = _new_run(scene, kind)
    if upload_first:
        run.name = f"upload-{id(launch):x}"
        _start_upload(run, launch)
    else:
        run.name, run.state = connection.submit(kind, launch.config), SUBMITTING
    _runtime.launches[run.name] = launch
    return run


def _new_run(scene: bpy.types.Scene, kind: str) -> RunProperties:
    """A run remembering where its meshes go: the reconstruction imported in ``scene`` when it started."""
    run = scene.carrara.runs.add()
    run.kind = kind
    recon = scene.carrara.reconstruction
    run.root_empty_name, run.collection_name = recon.root_empty_name, recon.collection_name
    _runtime.dirty = True
    return run


def _start_upload(run: RunProperties, launch: _Launch) -> None:
    launch.upload = DatasetUpload(launch.files)
    run.state, run.phase, run.progress, run.error = UPLOADING, "upload", 0.0, ""


def _step_launches(connection: Connection) -> None:
    for key, launch in list(_runtime.launches.items()):
        run = _run_named(key)
        if run is None or run.job_id or run.state not in (SUBMITTING, UPLOADING):
            del _runtime.launches[key]            # became a job, failed, or its scene is gone
            continue
        upload = launch.upload
        if run.state != UPLOADING or upload is None:
            continue
        upload.step(connection)
        _set(run, "progress", upload.fraction)
        if upload.state == TransferState.FAILED:
            run.state, run.error = JobState.FAILED, upload.error
        elif upload.state == TransferState.DONE:
            launch.config = {**(launch.upload_config or launch.config), "dataset": {"upload_id": upload.upload_id}}
            del _runtime.launches[key]
            run.name, run.state, run.phase = connection.submit(launch.kind, launch.config), SUBMITTING, ""
            _runtime.launches[run.name] = launch
        _runtime.dirty = True


def _run_named(name: str) -> RunProperties | None:
    for scene in bpy.data.scenes:
        run = scene.carrara.runs.get(name)
        if run is not None:
            return run
    return None


def cancel_job(job_id: str) -> None:
    _connection().cancel(job_id)


def resume_job(job_id: str) -> None:
    _connection().resume(job_id)


def refresh_jobs() -> None:
    _connection().list_jobs()


def save_results(job_id: str, folder: Path | None = None) -> list[Path]:
    """Fetch the job's final PLY/glTF into ``folder`` (default beside the .blend); the paths they will have."""
    _connection()
    run = _existing_run(job_id)
    paths = job_files.save_results(_runtime.files, run, folder or job_files.default_results_folder(job_id))
    _runtime.dirty = True
    return paths


def show_log(job_id: str) -> None:
    """Fetch the job's whole log into a text block (``run.log_text`` names it once it is there)."""
    _connection()
    job_files.show_log(_runtime.files, _existing_run(job_id))


def remove_job(job_id: str) -> None:
    """Delete a finished, failed or cancelled job and its files on the backend; its run leaves the panel."""
    job_files.remove_job(_connection(), _existing_run(job_id), find_run)


def prune_jobs(older_than_days: float) -> None:
    """Remove this client's finished, failed and cancelled jobs older than ``older_than_days`` (0: all of them)."""
    job_files.prune_jobs(_connection(), older_than_days)


def _existing_run(job_id: str) -> RunProperties:
    run = find_run(job_id)
    if run is None:
        raise ValueError(f"no run of job {job_id!r} in this file")
    return run


def find_run(job_id: str) -> RunProperties | None:
    """The run of ``job_id`` in any scene (looked up afresh: references to collection items do not last)."""
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.job_id == job_id:
                return run
    return None


def _connection() -> Connection:
    connection = _runtime.connection
    if connection is None or connection.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
        raise NotConnectedError(f"not connected to the backend: {_status().problem or 'press Connect'}")
    return connection


# --- the tick ---------------------------------------------------------------------------------------------------
def pump_tick(budget_s: float = TICK_BUDGET_S) -> float:
    """One pump step; returns the seconds until the next one (the timer's return value)."""
    if not _runtime.file_synced:
        _runtime.file_synced = True
        if _followed_job_ids():
            _runtime.wanted = True
    if not _runtime.wanted:
        return IDLE_INTERVAL_S
    status = _status()
    now = time.monotonic()
    died = _runtime.local.check()
    if died:
        status.local_backend = status.last_error = died
        _runtime.dirty = True
    _maintain_connection(backend_settings(), status, now, backend_died=bool(died))
    connection = _runtime.connection
    received = connection.poll(budget_s) if connection else []
    if connection is None or connection.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
        _abandon_unanswered_submits()
    if bpy.context.window_manager.is_interface_locked:     # e.g. rendering: keep the heartbeat, touch no data
        _runtime.backlog.extend(received)
        return ACTIVE_INTERVAL_S
    received, _runtime.backlog = _runtime.backlog + received, []
    for message in received:
        _apply(message, status)
    if import_finished_prepares():
        _runtime.dirty = True
    if connection:
        _step_launches(connection)
        _step_downloads(connection)
        if job_files.step(_runtime.files, connection, find_run):
            _runtime.dirty = True
        if step_dataset_fetches(_runtime.dataset_fetches, connection):
            _runtime.dirty = True
    _show_connection(status, connection)
    if _runtime.dirty:
        _runtime.dirty = False
        _show_status_bar()
        _tag_redraw()
    return ACTIVE_INTERVAL_S


def process_pending(timeout_s: float, until: Callable[[], bool] | None = None) -> bool:
    """Block (for headless scripts and tests) running ticks until ``until()`` holds, or, without it, until no
    run is submitting or active and no download is running. False if ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while True:
        pump_tick()
        if until() if until is not None else _quiet():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _quiet() -> bool:
    busy = {SUBMITTING, UPLOADING, *JobState.ACTIVE}
    return not any(run.state in busy for scene in bpy.data.scenes for run in scene.carrara.runs) and \
        not any(d.state == TransferState.RUNNING for d in _runtime.downloads.values()) and \
        not _runtime.files.results and not _runtime.files.logs and not _runtime.dataset_fetches


def _timer() -> float:
    try:
        return pump_tick()
    except Exception:       # a bug must not stop the pump for the rest of the session
        traceback.print_exc()
        return IDLE_INTERVAL_S


# --- connection upkeep ------------------------------------------------------------------------------------------
def _maintain_connection(settings: BackendSettings, status: BackendStatusProperties, now: float, *,
                         by_hand: bool = False, backend_died: bool = False) -> None:
    connection = _runtime.connection
    key = (settings.address, settings.server_public_key, settings.client_keys)
    if connection is not None and key != _runtime.connection_key:
        _drop_connection()            # the preferences changed
        connection = None
    alive = connection is not None and connection.state in (ConnectionState.CONNECTING, ConnectionState.CONNECTED)
    if alive and not backend_died:
        return
    wait = INCOMPATIBLE_RETRY_S if connection and connection.state == ConnectionState.INCOMPATIBLE \
        else RECONNECT_INTERVAL_S
    if now - _runtime.last_open < wait and not backend_died:
        return
    _runtime.last_open = now
    if settings.auto_start and is_local_address(settings.address) and not _runtime.local.running and \
            not something_listens(settings.address):
        try:
            _runtime.local.start(settings.address, settings.workspace, settings.python, by_hand=by_hand)
        except (OSError, ValueError, RuntimeError) as exc:
            status.local_backend = str(exc)
        else:
            status.local_backend = _runtime.local.note
    if connection is None:
        try:
            curve = load_curve_keys(settings.server_public_key, settings.client_keys)
        except (OSError, ValueError) as exc:
            status.state, status.problem = ConnectionState.CLOSED, f"the key settings are unusable: {exc}"
            return
        connection = Connection(settings.address, curve, client_name=f"{ROOT_PACKAGE} in Blender "
                                                                     f"{bpy.app.version_string}")
        _runtime.connection, _runtime.connection_key = connection, key
        for job_id in _followed_job_ids():
            connection.attach(job_id)
    connection.open()
    _runtime.dirty = True


def _drop_connection() -> None:
    if _runtime.connection is not None:
        _runtime.connection.close()
    _runtime.connection = None


def _followed_job_ids() -> list[str]:
    """Jobs worth hearing about: not over yet, or over without their final mesh delivered."""
    over = {JobState.FAILED, JobState.CANCELLED, MISSING}
    return sorted({run.job_id for scene in bpy.data.scenes for run in scene.carrara.runs
                   if run.job_id and run.state not in over and
                   not (run.state == JobState.FINISHED and (run.final_artifact or run.kind != "reconstruct") and
                        not awaits_dataset(run))})


def _status() -> BackendStatusProperties:
    return bpy.context.window_manager.carrara_backend


def _set(target: Any, name: str, value: Any) -> None:
    """Assign only on change, and remember that the panel needs a redraw."""
    if getattr(target, name) != value:
        setattr(target, name, value)
        _runtime.dirty = True


def _show_connection(status: BackendStatusProperties, connection: Connection | None) -> None:
    if connection is None:
        return
    _set(status, "state", connection.state)
    _set(status, "problem", connection.problem)
    _set(status, "address", connection.address)
    if _runtime.local.running:
        _set(status, "local_backend", _runtime.local.note)
    welcome = connection.welcome
    if not welcome:
        return
    caps = connection.capabilities
    _set(status, "server_version", str(welcome.get("server_version", "")))
    _set(status, "job_kinds", ", ".join(welcome.get("job_kinds") or ()))
    _set(status, "device", str(caps.get("device") or ""))
    _set(status, "gpu_name", str(caps.get("gpu_name") or ""))
    _set(status, "gpu_memory_gb", round((caps.get("gpu_memory_bytes") or 0) / 1e9, 1))
    _set(status, "torch_version", str(caps.get("torch") or caps.get("torch_error") or ""))
    _set(status, "cuda_version", str(caps.get("cuda") or ""))
    _set(status, "tinycudann", bool(caps.get("tinycudann")))


def _show_status_bar() -> None:
    """The newest busy run's progress in the status bar (cleared when nothing runs)."""
    workspace = bpy.context.workspace
    if workspace is None:
        return
    busy = [run for scene in bpy.data.scenes for run in scene.carrara.runs
            if run.state in (JobState.RUNNING, UPLOADING)]
    if not busy:
        workspace.status_text_set(None)
    elif busy[-1].state == UPLOADING:
        workspace.status_text_set(f"Carrara: sending photos {busy[-1].progress:.0%}")
    else:
        workspace.status_text_set(f"Carrara {busy[-1].kind}: {progress_text(busy[-1])}")


def _tag_redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == 'VIEW_3D':
                area.tag_redraw()


# --- messages -> runs -------------------------------------------------------------------------------------------
def _apply(message: Message, status: BackendStatusProperties) -> None:
    _runtime.dirty = True
    if message.type == MessageType.EVENT:
        run = find_run(message.job_id or "")
        if run is not None:
            _apply_event(run, message.job_id, message.body)
    elif message.type == MessageType.JOB:
        snapshot = message.body.get("job") or {}
        run = find_run(snapshot.get("job_id", "")) or _submitted_run(message.request_id)
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
    run = _submitted_run(message.request_id)
    launch = _runtime.launches.get(run.name) if run is not None else None
    if launch is not None and message.body.get("code") == ErrorCode.NEEDS_UPLOAD and launch.upload is None:
        _start_upload(run, launch)    # the backend cannot see the folder: send the files instead
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


def _submitted_run(request_id: str | None) -> RunProperties | None:
    if not request_id:
        return None
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.state == SUBMITTING and run.name == request_id:
                return run
    return None


def _abandon_unanswered_submits() -> None:
    """Submits whose reply can no longer come (the connection dropped): say so instead of waiting forever."""
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.state == SUBMITTING:
                run.state = MISSING
                run.reason = "the connection dropped before the backend answered; refresh the jobs or submit again"
                _runtime.dirty = True


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
        return
    if kind == MANIFEST_KIND:
        remember_dataset_manifest(run, ref)
        return
    if kind not in MESH_EVENTS:
        run.report_artifact = ref.name
        return
    delivered = run.final_artifact if kind == EventKind.FINAL_MESH else run.preview_artifact
    current = _runtime.downloads.get((job_id, kind))
    if ref.name == delivered or (current and current.ref == ref and current.state == TransferState.RUNNING):
        return
    if current is not None:
        current.cancel(f"superseded by {ref.name}")
    _runtime.downloads[(job_id, kind)] = ArtifactDownload(job_id, ref, _downloads_dir() / job_id / ref.name)


def _step_downloads(connection: Connection) -> None:
    for _, download in step_transfers(_runtime.downloads, connection):
        run = find_run(download.job_id)
        if run is None:
            continue
        if download.state == TransferState.FAILED:
            run.error = download.error
            continue
        try:
            mesh = MeshData.read(download.destination)
        except MeshFileError as exc:
            run.error = str(exc)
            continue
        on_mesh_ready(mesh, download.ref, run)
        _runtime.dirty = True


def _downloads_dir() -> Path:
    """Where fetched artifacts go: the extension's user folder, or the temp folder outside an extension."""
    if ROOT_PACKAGE.startswith("bl_ext."):
        return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, path="downloads", create=True))
    return Path(tempfile.gettempdir()) / "carrara-downloads"


# --- registration -----------------------------------------------------------------------------------------------
@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    """A .blend was opened: follow its runs' jobs (the next tick re-attaches them)."""
    _runtime.file_synced = False
    connection = _runtime.connection
    if connection is not None:
        for job_id in connection.followed_jobs - set(_followed_job_ids()):
            connection.detach(job_id)
        for job_id in _followed_job_ids():
            connection.attach(job_id)


def register() -> None:
    bpy.types.WindowManager.carrara_backend = bpy.props.PointerProperty(type=BackendStatusProperties)
    bpy.app.handlers.load_post.append(_on_load_post)
    if not bpy.app.background:
        bpy.app.timers.register(_timer, first_interval=0.5, persistent=True)


def unregister() -> None:
    global _runtime
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    _drop_connection()
    _runtime.local.stop()
    _runtime = _Runtime()
    del bpy.types.WindowManager.carrara_backend
