"""The sidebar's view of the backend (3D View > N > Carrara): the connection, what the backend can do, and the
jobs with a progress bar each. It only reads properties the pump keeps current; it never talks to the socket."""
from __future__ import annotations

import bpy

from ...shared.protocol import JobState
from ..client.connection import ConnectionState
from ..properties.runs import UPLOADING, BackendStatusProperties, RunProperties
from ..scene.prepared_dataset import can_fetch_dataset_again
from .progress_text import progress_text, upload_text
from .sidebar import SidebarPanel

_STATE_ICONS = {ConnectionState.CONNECTED: 'LINKED', ConnectionState.CONNECTING: 'SORTTIME',
                ConnectionState.LOST: 'ERROR', ConnectionState.INCOMPATIBLE: 'CANCEL',
                ConnectionState.CLOSED: 'UNLINKED'}
_JOB_ICONS = {JobState.QUEUED: 'SORTTIME', JobState.RUNNING: 'PLAY', JobState.FINISHED: 'CHECKMARK',
              JobState.FAILED: 'ERROR', JobState.CANCELLED: 'CANCEL', JobState.INTERRUPTED: 'PAUSE'}


def connection_text(status: BackendStatusProperties) -> str:
    if status.state == ConnectionState.CONNECTED:
        return f"Connected to {status.address}"
    if status.state == ConnectionState.CONNECTING:
        return f"Connecting to {status.address}…"
    if status.state == ConnectionState.LOST:
        return "Backend not answering"
    if status.state == ConnectionState.INCOMPATIBLE:
        return "Backend incompatible"
    return "Not connected"


def device_text(status: BackendStatusProperties) -> str:
    if status.device == "cuda":
        return f"GPU: {status.gpu_name} ({status.gpu_memory_gb:.1f} GB)"
    return f"Device: {status.device.upper() or '?'} (no CUDA GPU in use: training is slow)"


class CARRARA_PT_backend(SidebarPanel):
    bl_label = "Backend"
    bl_order = 2

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        status = context.window_manager.carrara_backend
        layout.label(text=connection_text(status), icon=_STATE_ICONS.get(status.state, 'QUESTION'))
        if status.state != ConnectionState.CONNECTED and status.problem:
            layout.label(text=status.problem)
        if status.local_backend:
            layout.label(text=f"Local backend: {status.local_backend}", icon='CONSOLE')
        if status.server_version:
            box = layout.box()
            box.label(text=device_text(status), icon='MEMORY')
            box.label(text=f"torch {status.torch_version or 'missing'} · CUDA {status.cuda_version or 'none'} · "
                           f"tiny-cuda-nn {'yes' if status.tinycudann else 'no'}")
            box.label(text=f"Backend {status.server_version} · jobs: {status.job_kinds}")
        if status.last_error:
            layout.label(text=status.last_error, icon='ERROR')
        row = layout.row(align=True)
        row.operator("carrara.backend_connect", icon='FILE_REFRESH',
                     text="Reconnect" if status.state == ConnectionState.CONNECTED else "Connect")
        row.operator("carrara.backend_start_local", icon='CONSOLE', text="Start Local")
        row.operator("carrara.jobs_refresh", icon='VIEWZOOM', text="Jobs")


class CARRARA_PT_jobs(SidebarPanel):
    bl_label = "Jobs"
    bl_order = 3

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.operator("carrara.check_dataset", icon='CHECKMARK')
        runs = list(context.scene.carrara.runs)
        if not runs:
            layout.label(text="No jobs in this file yet")
        for run in reversed(runs):
            draw_run(layout.box(), run)
        if runs:
            layout.operator("carrara.jobs_prune", icon='TRASH')
        others = context.window_manager.carrara_backend.other_jobs
        if others:
            layout.label(text=f"{others} more job(s) on the backend belong to other files")


def draw_run(layout: bpy.types.UILayout, run: RunProperties) -> None:
    row = layout.row()
    row.label(text=f"{run.kind} {run.job_id or '(submitting)'}", icon=_JOB_ICONS.get(run.state, 'QUESTION'))
    row.label(text=run.state)
    if run.state == UPLOADING:
        layout.progress(factor=run.progress, type='BAR', text=upload_text(run))
    elif run.total > 0 or run.state in JobState.ACTIVE:
        layout.progress(factor=run.progress, type='BAR', text=progress_text(run))
    if run.reason and run.state != JobState.FINISHED:
        layout.label(text=run.reason)
    if run.last_log:
        layout.label(text=run.last_log, icon='INFO')
    if run.error:
        layout.label(text=run.error, icon='ERROR')
        layout.operator("carrara.job_show_traceback", icon='TEXT').job_id = run.job_id
        if can_fetch_dataset_again(run):
            layout.operator("carrara.fetch_dataset_again", icon='IMPORT').job_id = run.job_id
    if run.job_id and run.state in JobState.ACTIVE:
        layout.operator("carrara.job_cancel", icon='CANCEL').job_id = run.job_id
    if run.job_id and run.state in JobState.RESUMABLE:
        layout.operator("carrara.job_resume", icon='PLAY').job_id = run.job_id
    if run.job_id and run.kind == "reconstruct" and run.state in (JobState.FINISHED, *JobState.RESUMABLE):
        layout.operator("carrara.extract_again", icon='MESH_DATA').job_id = run.job_id
    if run.job_id and run.results_json:
        row = layout.row(align=True)
        row.operator("carrara.job_save_results", icon='EXPORT').job_id = run.job_id
        if run.results_note:
            row.label(text=run.results_note)
    if run.job_id:
        row = layout.row(align=True)
        row.operator("carrara.job_show_log", icon='TEXT', text="Log").job_id = run.job_id
        if run.log_text:
            row.operator("carrara.job_copy_log", icon='COPYDOWN', text="Copy").job_id = run.job_id
        if run.state not in JobState.ACTIVE:
            row.operator("carrara.job_remove", icon='TRASH', text="Remove").job_id = run.job_id


CLASSES = (CARRARA_PT_backend, CARRARA_PT_jobs)
