"""Operators for a job's files: save its final PLY/glTF to a folder, read and copy its whole log, remove it."""
from __future__ import annotations

from pathlib import Path

import bpy

from ..client import job_files, jobs
from ..client.runs import find_run
from .reporting import report_outcome


class _OnJob:
    job_id: bpy.props.StringProperty(name="Job", options={'SKIP_SAVE'})


class CARRARA_OT_job_save_results(_OnJob, bpy.types.Operator):
    """Fetch this job's final PLY and glTF (with its texture) from the backend into a folder, checked by SHA-256;
    an interrupted fetch continues where it stopped"""

    bl_idname = "carrara.job_save_results"
    bl_label = "Save Results"

    directory: bpy.props.StringProperty(name="Folder", subtype='DIR_PATH', options={'SKIP_SAVE'},
                                        description="Where the files go; by default beside the .blend")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.directory:
            self.directory = str(job_files.default_results_folder(self.job_id)) + "/"
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context: bpy.types.Context) -> set[str]:
        folder = Path(bpy.path.abspath(self.directory)) if self.directory else None
        return report_outcome(self, lambda: f"Saving {len(jobs.save_results(self.job_id, folder))} file(s) of job "
                                            f"{self.job_id}")


class CARRARA_OT_job_show_log(_OnJob, bpy.types.Operator):
    """Fetch this job's whole log from the backend into a text block"""

    bl_idname = "carrara.job_show_log"
    bl_label = "Show Log"

    def execute(self, context: bpy.types.Context) -> set[str]:
        return report_outcome(self, lambda: jobs.show_log(self.job_id) or
                              f"Fetching the log into the text block '{job_files.log_text_name(self.job_id)}'")


class CARRARA_OT_job_copy_log(_OnJob, bpy.types.Operator):
    """Copy this job's fetched log to the clipboard"""

    bl_idname = "carrara.job_copy_log"
    bl_label = "Copy Log"

    def execute(self, context: bpy.types.Context) -> set[str]:
        def copy() -> str:
            run = find_run(self.job_id)
            if run is None:
                raise ValueError(f"no run of job {self.job_id!r} in this file")
            return f"Copied {job_files.copy_log(run, context.window_manager)} characters of the log"
        return report_outcome(self, copy)


class CARRARA_OT_job_remove(_OnJob, bpy.types.Operator):
    """Delete this finished, failed or cancelled job and its files on the backend, and remove it from the panel"""

    bl_idname = "carrara.job_remove"
    bl_label = "Remove Job"

    def execute(self, context: bpy.types.Context) -> set[str]:
        return report_outcome(self, lambda: jobs.remove_job(self.job_id))


class CARRARA_OT_jobs_prune(bpy.types.Operator):
    """Delete this client's finished, failed and cancelled jobs older than some days on the backend, with their
    files, and forget unused uploads past the backend's retention"""

    bl_idname = "carrara.jobs_prune"
    bl_label = "Remove Old Jobs"

    older_than_days: bpy.props.FloatProperty(name="Older than (days)", default=7.0, min=0.0, max=36500.0)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        return report_outcome(self, lambda: jobs.prune_jobs(self.older_than_days))


CLASSES = (CARRARA_OT_job_save_results, CARRARA_OT_job_show_log, CARRARA_OT_job_copy_log, CARRARA_OT_job_remove,
           CARRARA_OT_jobs_prune)
