"""A finished ``prepare`` job's dataset, imported through the one COLMAP import (File > Import > COLMAP), so the
points, the cameras with their photos and the fitted sphere are exactly what importing that folder by hand gives.

A local backend writes the dataset where the run's ``dataset_path`` says; a remote one keeps it in its job folder
and announces a manifest (``run.dataset_manifest``), and the dataset is fetched into ``dataset_path`` first
(``DatasetFetch``). ``import_finished_prepares`` and ``step_dataset_fetches`` are plain functions the pump calls on
each tick (tests call them directly); they act only on prepare runs that finished and were not imported yet.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import bpy
from bpy.types import Scene

from ..shared.protocol import ArtifactRef, JobState, ProtocolError
from .connection import Connection
from .dataset_fetch import DatasetFetch
from .props_runs import RunProperties
from .transfers import TransferState

FETCH_PHASE = "fetching dataset"


def remember_dataset_manifest(run: RunProperties, ref: ArtifactRef) -> None:
    """Keep the manifest's ref on the run, so the fetch can start (or resume after a reopen) once it finished."""
    run.dataset_manifest = json.dumps(ref.to_json(), sort_keys=True)


def awaits_dataset(run: RunProperties) -> bool:
    """A prepare run whose dataset has not reached the scene (nor failed to): worth following."""
    return run.kind == "prepare" and not run.dataset_imported and not run.error


def import_finished_prepares(scene: Scene | None = None) -> list[str]:
    """Import every finished, not yet imported prepare run of ``scene`` (default: the current one) whose dataset
    is on this disk (a remote one is imported by ``step_dataset_fetches``); returns the dataset folders imported."""
    scene = scene or bpy.context.scene
    if scene is None:
        return []
    imported = []
    for run in scene.carrara.runs:
        if _finished_prepare(run) and not run.dataset_manifest and _import_run(scene, run):
            imported.append(run.dataset_path)
    return imported


def step_dataset_fetches(fetches: dict[str, DatasetFetch], connection: Connection) -> bool:
    """Start or advance the fetch of each finished remote prepare run's dataset, and import it once every file is
    whole; True when a run changed (the panel shows the files as they arrive)."""
    changed = False
    for _, run in _prepare_runs():
        if _finished_prepare(run) and run.dataset_manifest and not run.error and run.job_id not in fetches:
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
        scene, run = next(((s, r) for s, r in _prepare_runs() if r.job_id == job_id), (None, None))
        if run is None or fetch.state != TransferState.RUNNING:
            del fetches[job_id]
        if run is None:
            continue
        if fetch.state == TransferState.FAILED:
            run.error = f"fetching the prepared dataset into {fetch.folder}: {fetch.error}"
        elif fetch.state == TransferState.DONE:
            _import_run(scene, run)
        else:
            shown = (FETCH_PHASE, fetch.files_done, fetch.files_total, round(fetch.fraction, 2))
            if (run.phase, run.iteration, run.total, round(run.progress, 2)) == shown:
                continue
            run.phase, run.iteration, run.total, run.progress = shown
        changed = True
    return changed


def _prepare_runs() -> Iterator[tuple[Scene, RunProperties]]:
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.kind == "prepare":
                yield scene, run


def _finished_prepare(run: RunProperties) -> bool:
    return run.kind == "prepare" and run.state == JobState.FINISHED and bool(run.dataset_path) and \
        not run.dataset_imported


def _import_run(scene: Scene, run: RunProperties) -> bool:
    """Import the run's dataset once, even if it fails (the artist can import the folder by hand)."""
    run.dataset_imported = True
    if import_prepared_dataset(scene, Path(run.dataset_path)):
        return True
    run.error = (f"the prepared dataset {run.dataset_path} did not import (File > Import > COLMAP names "
                 "the problem)")
    return False


def import_prepared_dataset(scene: Scene, dataset: Path) -> bool:
    """The dataset into ``scene`` with the COLMAP importer's defaults; False if the importer refused it."""
    with bpy.context.temp_override(scene=scene):
        return bpy.ops.import_scene.carrara_colmap(filepath=str(dataset)) == {"FINISHED"}
