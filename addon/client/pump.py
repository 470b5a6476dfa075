"""The one client pump: the tick that moves backend news into Blender data, on the main thread.

``pump_tick()`` is a plain function: Blender calls it from a persistent ``bpy.app.timers`` timer (each tick does a
few milliseconds of work), and tests and headless scripts call it directly or through ``process_pending()``
(timers never fire under the bpy module or ``blender -b``). A tick keeps the connection alive (``keep_alive``),
applies what the backend said to the runs (``events``), and advances uploads (``launches``), meshes
(``mesh_delivery``), result files and logs (``job_files``) and prepared datasets (``dataset_delivery``).
"""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable

import bpy

from ...shared.protocol import JobState
from ..panels.progress_text import status_bar_text
from ..preferences import backend_settings
from ..properties.runs import SUBMITTING, UPLOADING
from ..scene.prepared_dataset import import_finished_prepares
from . import job_files
from .connection import ConnectionState
from .dataset_delivery import step_dataset_fetches
from .events import apply_message
from .keep_alive import backend_status, drop_connection, follow_file_jobs, maintain_connection, show_connection
from .launches import step_launches
from .mesh_delivery import step_mesh_downloads
from .runs import abandon_unanswered_submits, find_run, followed_job_ids
from .runtime import reset_runtime, runtime
from .transfers import TransferState

TICK_BUDGET_S = 0.004
ACTIVE_INTERVAL_S = 0.1
IDLE_INTERVAL_S = 0.5


def pump_tick(budget_s: float = TICK_BUDGET_S) -> float:
    """One pump step; returns the seconds until the next one (the timer's return value)."""
    state = runtime()
    if not state.file_synced:
        state.file_synced = True
        if followed_job_ids():
            state.wanted = True
    if not state.wanted:
        return IDLE_INTERVAL_S
    status = backend_status()
    now = time.monotonic()
    died = state.local.check()
    if died:
        status.local_backend = status.last_error = died
        state.dirty = True
    maintain_connection(backend_settings(), status, now, backend_died=bool(died))
    connection = state.connection
    received = connection.poll(budget_s) if connection else []
    if connection is None or connection.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
        abandon_unanswered_submits()
    if bpy.context.window_manager.is_interface_locked:     # e.g. rendering: keep the heartbeat, touch no data
        state.backlog.extend(received)
        return ACTIVE_INTERVAL_S
    received, state.backlog = state.backlog + received, []
    for message in received:
        apply_message(message, status)
    if import_finished_prepares():
        state.dirty = True
    if connection:
        step_launches(connection)
        step_mesh_downloads(connection)
        if job_files.step(state.files, connection, find_run):
            state.dirty = True
        if step_dataset_fetches(state.dataset_fetches, connection):
            state.dirty = True
    show_connection(status, connection)
    if state.dirty:
        state.dirty = False
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
    state = runtime()
    busy = {SUBMITTING, UPLOADING, *JobState.ACTIVE}
    return not any(run.state in busy for scene in bpy.data.scenes for run in scene.carrara.runs) and \
        not any(d.state == TransferState.RUNNING for d in state.downloads.values()) and \
        not state.files.results and not state.files.logs and not state.dataset_fetches


def _timer() -> float:
    try:
        return pump_tick()
    except Exception:       # a bug must not stop the pump for the rest of the session
        traceback.print_exc()
        return IDLE_INTERVAL_S


def _show_status_bar() -> None:
    """The newest busy run's progress in the status bar (cleared when nothing runs)."""
    workspace = bpy.context.workspace
    if workspace is None:
        return
    busy = [run for scene in bpy.data.scenes for run in scene.carrara.runs
            if run.state in (JobState.RUNNING, UPLOADING)]
    workspace.status_text_set(status_bar_text(busy[-1]) if busy else None)


def _tag_redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == 'VIEW_3D':
                area.tag_redraw()


@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    """A .blend was opened: follow its runs' jobs (the next tick re-attaches them)."""
    runtime().file_synced = False
    follow_file_jobs()


def register() -> None:
    bpy.app.handlers.load_post.append(_on_load_post)
    if not bpy.app.background:
        bpy.app.timers.register(_timer, first_interval=0.5, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    drop_connection()
    runtime().local.stop()
    reset_runtime()
