"""A remote ``prepare`` job's dataset onto this disk, then into the scene: the job announces a manifest
(``run.dataset_manifest``, kept on the run so a reopened file resumes), ``DatasetFetch`` brings the files into the
run's ``dataset_path``, and ``scene.prepared_dataset`` imports them. The pump calls ``step_dataset_fetches`` on each
tick (tests call it directly)."""
from __future__ import annotations

import json
from pathlib import Path

from ...shared.protocol import ArtifactRef, ProtocolError
from ..properties.runs import RunProperties
from ..scene.prepared_dataset import finished_prepare, import_run, prepare_runs
from .connection import Connection
from .dataset_fetch import DatasetFetch
from .transfers import TransferState

FETCH_PHASE = "fetching dataset"


def remember_dataset_manifest(run: RunProperties, ref: ArtifactRef) -> None:
    """Keep the manifest's ref on the run, so the fetch can start (or resume after a reopen) once it finished."""
    run.dataset_manifest = json.dumps(ref.to_json(), sort_keys=True)


def step_dataset_fetches(fetches: dict[str, DatasetFetch], connection: Connection) -> bool:
    """Start or advance the fetch of each finished remote prepare run's dataset, and import it once every file is
    whole; True when a run changed (the panel shows the files as they arrive)."""
    changed = False
    for _, run in prepare_runs():
        if finished_prepare(run) and run.dataset_manifest and not run.error and run.job_id not in fetches:
            try:
                ref = ArtifactRef.from_json(json.loads(run.dataset_manifest))
                fetches[run.job_id] = DatasetFetch(run.job_id, ref, Path(run.dataset_path))
            except ProtocolError as exc:
                run.error = f"the backend announced an unusable dataset manifest: {exc.message}"
            except (OSError, ValueError) as exc:
                run.error = f"the prepared dataset cannot be fetched: {exc}"
            changed = True
    for job_id, fetch in list(fetches.items()):
        fetch.step(connection)
        scene, run = next(((s, r) for s, r in prepare_runs() if r.job_id == job_id), (None, None))
        if run is None or fetch.state != TransferState.RUNNING:
            del fetches[job_id]
        if run is None:
            continue
        if fetch.state == TransferState.FAILED:
            run.error = f"fetching the prepared dataset into {fetch.folder}: {fetch.error}"
        elif fetch.state == TransferState.DONE:
            import_run(scene, run)
        else:
            shown = (FETCH_PHASE, fetch.files_done, fetch.files_total, round(fetch.fraction, 2))
            if (run.phase, run.iteration, run.total, round(run.progress, 2)) == shown:
                continue
            run.phase, run.iteration, run.total, run.progress = shown
        changed = True
    return changed
