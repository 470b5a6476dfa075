"""What the operators ask of jobs the backend already has: cancel, resume, list, save their results, show their
log, fetch a prepared dataset again, remove them. Each needs the connection and names what to do when there is none."""
from __future__ import annotations

from pathlib import Path

from ..scene.prepared_dataset import can_fetch_dataset_again
from . import job_files
from .keep_alive import current_connection
from .runs import existing_run, find_run
from .runtime import runtime


def cancel_job(job_id: str) -> None:
    current_connection().cancel(job_id)


def resume_job(job_id: str) -> None:
    current_connection().resume(job_id)


def refresh_jobs() -> None:
    current_connection().list_jobs()


def save_results(job_id: str, folder: Path | None = None) -> list[Path]:
    """Fetch the job's final PLY/glTF into ``folder`` (default beside the .blend); the paths they will have."""
    current_connection()
    state = runtime()
    paths = job_files.save_results(state.files, existing_run(job_id),
                                   folder or job_files.default_results_folder(job_id))
    state.dirty = True
    return paths


def show_log(job_id: str) -> None:
    """Fetch the job's whole log into a text block (``run.log_text`` names it once it is there)."""
    current_connection()
    job_files.show_log(runtime().files, existing_run(job_id))


def remove_job(job_id: str) -> None:
    """Delete a finished, failed or cancelled job and its files on the backend; its run leaves the panel."""
    job_files.remove_job(current_connection(), existing_run(job_id), find_run)


def prune_jobs(older_than_days: float) -> None:
    """Remove this client's finished, failed and cancelled jobs older than ``older_than_days`` (0: all of them)."""
    job_files.prune_jobs(current_connection(), older_than_days)


def fetch_dataset_again(job_id: str) -> None:
    """Clear the fetch's error so the next tick starts it again (``step_dataset_fetches``)."""
    current_connection()
    run = existing_run(job_id)
    if not can_fetch_dataset_again(run):
        raise ValueError(f"job {job_id} has no prepared dataset whose fetch failed")
    run.error = run.traceback = ""
    runtime().dirty = True
