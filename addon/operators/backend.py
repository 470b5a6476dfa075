"""Operators for the backend connection and its jobs; each reports what failed and what to do about it."""
from __future__ import annotations

import bpy

from ..client import jobs, keep_alive, launches
from ..client.runs import find_run
from ..client.runtime import runtime
from ..preferences import backend_settings
from .reporting import report_outcome


class CARRARA_OT_backend_connect(bpy.types.Operator):
    """Connect to the backend in the preferences (or reconnect now), starting a local one if set to"""

    bl_idname = "carrara.backend_connect"
    bl_label = "Connect to Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        return report_outcome(self, lambda: f"Connecting to {keep_alive.connect(context).address}")


class CARRARA_OT_backend_start_local(bpy.types.Operator):
    """Start a backend on this machine with the Python and workspace in the preferences"""

    bl_idname = "carrara.backend_start_local"
    bl_label = "Start Local Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        def start() -> str:
            keep_alive.start_local_backend(context)
            return f"Local backend {runtime().local.note}"
        return report_outcome(self, start, failed=lambda why: f"Local backend not started: {why}")


class CARRARA_OT_jobs_refresh(bpy.types.Operator):
    """Ask the backend for the state of every job"""

    bl_idname = "carrara.jobs_refresh"
    bl_label = "Refresh Jobs"

    def execute(self, context: bpy.types.Context) -> set[str]:
        return report_outcome(self, jobs.refresh_jobs)


class _JobOperator:
    """Shared by the operators that act on one job; subclasses define ``run()``."""

    job_id: bpy.props.StringProperty(name="Job", options={'SKIP_SAVE'})

    def execute(self, context: bpy.types.Context) -> set[str]:
        if find_run(self.job_id) is None:
            self.report({'ERROR'}, f"No run of job {self.job_id!r} in this file")
            return {'CANCELLED'}
        return report_outcome(self, self.run)


class CARRARA_OT_job_cancel(_JobOperator, bpy.types.Operator):
    """Stop this job; it writes a checkpoint, so it can be resumed"""

    bl_idname = "carrara.job_cancel"
    bl_label = "Cancel Job"

    def run(self) -> None:
        jobs.cancel_job(self.job_id)


class CARRARA_OT_job_resume(_JobOperator, bpy.types.Operator):
    """Run this failed, cancelled or interrupted job again from its last checkpoint"""

    bl_idname = "carrara.job_resume"
    bl_label = "Resume Job"

    def run(self) -> None:
        jobs.resume_job(self.job_id)


class CARRARA_OT_fetch_dataset_again(_JobOperator, bpy.types.Operator):
    """Fetch the prepared dataset again: files already whole are kept, the rest continue where they stopped"""

    bl_idname = "carrara.fetch_dataset_again"
    bl_label = "Fetch Dataset Again"

    def run(self) -> None:
        jobs.fetch_dataset_again(self.job_id)


class CARRARA_OT_job_show_traceback(bpy.types.Operator):
    """Put the backend's error and traceback for this job into a text block, to read or send in a bug report"""

    bl_idname = "carrara.job_show_traceback"
    bl_label = "Show Traceback"

    job_id: bpy.props.StringProperty(name="Job", options={'SKIP_SAVE'})

    def execute(self, context: bpy.types.Context) -> set[str]:
        run = find_run(self.job_id)
        if run is None or not (run.error or run.traceback):
            self.report({'WARNING'}, f"Job {self.job_id} has reported no error")
            return {'CANCELLED'}
        name = f"Carrara {self.job_id} error"
        text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
        text.from_string(f"{run.error}\n\n{run.traceback or '(the backend sent no traceback)'}")
        for area in context.screen.areas if context.screen else ():
            if area.type == 'TEXT_EDITOR':
                area.spaces.active.text = text
        self.report({'ERROR'}, f"{run.error} (full text in the text block '{name}')")
        return {'FINISHED'}


class CARRARA_OT_check_dataset(bpy.types.Operator):
    """Ask the backend to read a COLMAP model or transforms.json and open every photo, reporting each problem"""

    bl_idname = "carrara.check_dataset"
    bl_label = "Check Dataset"

    directory: bpy.props.StringProperty(name="Dataset", subtype='DIR_PATH',
                                        description="COLMAP workspace or model folder, as the backend sees it")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self.directory:
            self.report({'ERROR'}, "Choose the dataset folder to check")
            return {'CANCELLED'}
        def submit() -> str:
            launches.submit_job(context.scene, "check_dataset", {"dataset": {"path": bpy.path.abspath(self.directory)}})
            return "Dataset check submitted"
        return report_outcome(self, submit,
                              failed=lambda why: f"Not submitted: {why} (backend {backend_settings(context).address})")


CLASSES = (CARRARA_OT_backend_connect, CARRARA_OT_backend_start_local, CARRARA_OT_jobs_refresh,
           CARRARA_OT_job_cancel, CARRARA_OT_job_resume, CARRARA_OT_fetch_dataset_again, CARRARA_OT_job_show_traceback,
           CARRARA_OT_check_dataset)
