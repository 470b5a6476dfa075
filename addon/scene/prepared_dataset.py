"""A finished ``prepare`` job's dataset, imported through the one COLMAP import (File > Import > COLMAP), so the
points, the cameras with their photos and the fitted sphere are exactly what importing that folder by hand gives.

A local backend writes the dataset where the run's ``dataset_path`` says, and ``import_finished_prepares`` imports
it; a remote one's is fetched there first (``client.dataset_delivery``), which imports it through ``import_run``.
Both act only on prepare runs that finished and were not imported yet.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import bpy
from bpy.types import Scene

from ...shared.protocol import JobState
from ..properties.runs import RunProperties


def awaits_dataset(run: RunProperties) -> bool:
    """A prepare run whose dataset has not reached the scene (nor failed to): worth following."""
    return run.kind == "prepare" and not run.dataset_imported and not run.error


def import_finished_prepares(scene: Scene | None = None) -> list[str]:
    """Import every finished, not yet imported prepare run of ``scene`` (default: the current one) whose dataset
    is on this disk (a remote one is imported once fetched); returns the dataset folders imported."""
    scene = scene or bpy.context.scene
    if scene is None:
        return []
    imported = []
    for run in scene.carrara.runs:
        if finished_prepare(run) and not run.dataset_manifest and import_run(scene, run):
            imported.append(run.dataset_path)
    return imported


def prepare_runs() -> Iterator[tuple[Scene, RunProperties]]:
    for scene in bpy.data.scenes:
        for run in scene.carrara.runs:
            if run.kind == "prepare":
                yield scene, run


def finished_prepare(run: RunProperties) -> bool:
    return run.kind == "prepare" and run.state == JobState.FINISHED and bool(run.dataset_path) and \
        not run.dataset_imported


def can_fetch_dataset_again(run: RunProperties) -> bool:
    """A remote prepare run whose dataset fetch failed (a dropped connection, a full disk): files already whole are
    kept, so trying again continues where it stopped."""
    return finished_prepare(run) and bool(run.dataset_manifest) and bool(run.error)


def import_run(scene: Scene, run: RunProperties) -> bool:
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
