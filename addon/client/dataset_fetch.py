"""A remote ``prepare`` job's dataset onto the artist's disk, through the one fetch path results and meshes use.

The job's ``dataset`` artifact is a manifest (``shared/dataset_manifest``); it is fetched first, then every file it
lists as its own ``ArtifactDownload`` (chunks into ``<file>.partial``, renamed into place only when the SHA-256
matches), a few files at a time. A file already whole in the folder is kept and a partial one continues, so a
dropped connection or a Blender restart resumes where it stopped. Driven by ``step(connection)``; no bpy here.
"""
from __future__ import annotations

from pathlib import Path

from ...shared.dataset_manifest import (MANIFEST_NAME, REPORT_NAME, ManifestEntry, ManifestError, dataset_file_ref,
                                       read_manifest)
from ...shared.protocol import ArtifactRef
from .connection import Connection
from .transfers import ArtifactDownload, TransferState

PARALLEL_FILES = 4       # files in flight at once (each keeps its own small window of chunks)


def check_destination(folder: Path) -> None:
    """The dataset goes into a new or empty folder, or over one prepared or fetched before: never over someone's
    other files."""
    if folder.is_file():
        raise ValueError(f"{folder} is a file: choose a folder for the prepared dataset")
    if folder.is_dir() and not (folder / MANIFEST_NAME).is_file() and not (folder / REPORT_NAME).is_file() and \
            any(p.name != MANIFEST_NAME + ".partial" for p in folder.iterdir()):
        raise ValueError(f"{folder} already holds files that are not a prepared dataset: choose an empty or new "
                         "folder for it")


class DatasetFetch:
    """The manifest, then each listed file, into ``folder``; ``state`` is a TransferState, ``error`` says why."""

    def __init__(self, job_id: str, manifest: ArtifactRef, folder: Path, *, parallel: int = PARALLEL_FILES):
        self.job_id, self.folder, self.parallel = job_id, Path(folder), parallel
        check_destination(self.folder)
        self.state, self.error = TransferState.RUNNING, ""
        self.files_done = self.files_total = self.bytes_done = self.total_bytes = 0
        self._manifest = ArtifactDownload(job_id, manifest, self.folder / MANIFEST_NAME)
        self._waiting: list[ManifestEntry] | None = None       # None until the manifest is read
        self._active: list[ArtifactDownload] = []

    @property
    def fraction(self) -> float:
        received = self.bytes_done + sum(d.received for d in self._active)
        return received / self.total_bytes if self.total_bytes else 0.0

    def step(self, connection: Connection) -> None:
        if self.state != TransferState.RUNNING:
            return
        if self._waiting is None and not self._read_manifest(connection):
            return
        while len(self._active) < self.parallel and self._waiting:
            entry = self._waiting.pop(0)
            self._active.append(ArtifactDownload(self.job_id, dataset_file_ref(entry), self.folder / entry.path))
        for download in list(self._active):
            download.step(connection)
            if download.state == TransferState.FAILED:
                self.state, self.error = TransferState.FAILED, download.error
                return
            if download.state == TransferState.DONE:
                self._active.remove(download)
                self.files_done += 1
                self.bytes_done += download.ref.size
        if not self._active and not self._waiting:
            self.state = TransferState.DONE

    def _read_manifest(self, connection: Connection) -> bool:
        """Fetch and read the manifest; True once the files it lists are known."""
        self._manifest.step(connection)
        if self._manifest.state == TransferState.FAILED:
            self.state, self.error = TransferState.FAILED, self._manifest.error
        if self._manifest.state != TransferState.DONE:
            return False
        try:
            entries = read_manifest(self._manifest.destination)
        except ManifestError as exc:
            self.state, self.error = TransferState.FAILED, str(exc)
            return False
        self._waiting = list(entries)
        self.files_total, self.total_bytes = len(entries), sum(entry.size for entry in entries)
        return True
