"""Meshes the backend announces, fetched (resumable, checked by SHA-256) and landed in the scene: a preview
replaces the run's preview object, the final asset gets its own object."""
from __future__ import annotations

import tempfile
from pathlib import Path

import bpy

from ...shared.mesh_data import MeshData, MeshFileError
from ...shared.protocol import ArtifactRef, EventKind
from ..preferences import ROOT_PACKAGE
from ..properties.runs import RunProperties
from ..scene import mesh as scene_mesh
from .connection import Connection
from .runs import find_run
from .runtime import runtime
from .transfers import ArtifactDownload, TransferState, step_transfers

MESH_EVENTS = (EventKind.PREVIEW_MESH, EventKind.FINAL_MESH)


def on_mesh_ready(mesh: MeshData, ref: ArtifactRef, run: RunProperties) -> None:
    """A finished, SHA-256-verified mesh of ``run`` lands in place, under the capture's root Empty.

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


def fetch_mesh(run: RunProperties, job_id: str, kind: str, ref: ArtifactRef) -> None:
    """Start fetching an announced mesh, unless it is delivered or on its way; it supersedes an older one."""
    downloads = runtime().downloads
    delivered = run.final_artifact if kind == EventKind.FINAL_MESH else run.preview_artifact
    current = downloads.get((job_id, kind))
    if ref.name == delivered or (current and current.ref == ref and current.state == TransferState.RUNNING):
        return
    if current is not None:
        current.cancel(f"superseded by {ref.name}")
    downloads[(job_id, kind)] = ArtifactDownload(job_id, ref, downloads_dir() / job_id / ref.name)


def step_mesh_downloads(connection: Connection) -> None:
    for _, download in step_transfers(runtime().downloads, connection):
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
        runtime().dirty = True


def downloads_dir() -> Path:
    """Where fetched artifacts go: the extension's user folder, or the temp folder outside an extension."""
    if ROOT_PACKAGE.startswith("bl_ext."):
        return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, path="downloads", create=True))
    return Path(tempfile.gettempdir()) / "carrara-downloads"
