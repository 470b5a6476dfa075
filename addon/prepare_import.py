"""A finished ``prepare`` job's dataset, imported through the one COLMAP import (File > Import > COLMAP), so the
points, the cameras with their photos and the fitted sphere are exactly what importing that folder by hand gives.

``import_finished_prepares`` is a plain function the pump calls on each tick (tests call it directly); it acts
only on the current scene's prepare runs that finished and were not imported yet, once each.
"""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy.types import Scene

from ..shared.protocol import JobState


def import_finished_prepares(scene: Scene | None = None) -> list[str]:
    """Import every finished, not yet imported prepare run of ``scene`` (default: the current one); returns the
    dataset folders imported."""
    scene = scene or bpy.context.scene
    if scene is None:
        return []
    imported = []
    for run in scene.carrara.runs:
        if run.kind != "prepare" or run.state != JobState.FINISHED or not run.dataset_path or run.dataset_imported:
            continue
        run.dataset_imported = True          # once, even if it fails: the artist can import the folder by hand
        if import_prepared_dataset(scene, Path(run.dataset_path)):
            imported.append(run.dataset_path)
        else:
            run.error = (f"the prepared dataset {run.dataset_path} did not import (File > Import > COLMAP names "
                         "the problem)")
    return imported


def import_prepared_dataset(scene: Scene, dataset: Path) -> bool:
    """The dataset into ``scene`` with the COLMAP importer's defaults; False if the importer refused it."""
    with bpy.context.temp_override(scene=scene):
        return bpy.ops.import_scene.carrara_colmap(filepath=str(dataset)) == {"FINISHED"}
