"""The server's Reporter: what a running job says becomes job.json, log.txt, artifacts and EVENT messages.

The job runs on the worker thread; ``emit`` hands each event to the server loop, which alone owns the socket.
Record updates and their events happen under one lock, in one order, so a client that attaches sees a
snapshot and then only newer events.
"""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ...shared.checksum import file_sha256
from ...shared.mesh_data import MeshData
from ...shared.protocol import (ArtifactEvent, ArtifactRef, EventKind, LogEvent, Message, ProgressEvent,
                                job_event)
from .workspace import JobRecord, Workspace

#: job.json is rewritten at most this often for progress alone (state changes and artifacts always write it).
PROGRESS_SAVE_INTERVAL_S = 1.0
#: Preview meshes kept on disk per job; older ones are deleted (a client fetches the newest).
PREVIEWS_KEPT = 3
MESH_KINDS = (EventKind.PREVIEW_MESH, EventKind.FINAL_MESH)


class JobContext:
    """One run of one job; implements ``carrara.backend.jobs.reporting.Reporter``."""

    def __init__(self, record: JobRecord, workspace: Workspace, lock: threading.RLock,
                 emit: Callable[[Message], None], cancel: threading.Event,
                 allowed_roots: list[Path] | None = None):
        self.record = record
        #: folders the job may read photos from (shared.dataset_source's ``allowed_roots``); None: the dataset's own
        self.allowed_roots = allowed_roots
        self.workspace = workspace
        self.job_dir = workspace.job_dir(record.job_id)
        self.artifacts_dir = self.job_dir / "artifacts"
        self._lock = lock
        self._emit = emit
        self._cancel = cancel
        self._last_save = 0.0

    # --- Reporter ------------------------------------------------------------------------------------------
    def progress(self, *, iteration: int, total: int, loss: float | None, psnr: float | None, rate: float,
                 eta_s: float, phase: str = "train") -> None:
        record = ProgressEvent.at(iteration, total, loss=loss, psnr=psnr, rate=rate, eta_s=eta_s, phase=phase)
        with self._lock:
            self.record.progress = record.to_json()
            self._emit(job_event(self.record.job_id, record))
            now = time.monotonic()
            if now - self._last_save >= PROGRESS_SAVE_INTERVAL_S:
                self._last_save = now
                self.workspace.save(self.record)

    def log(self, line: str, level: str = "info") -> None:
        record = LogEvent.of(line, level)
        with self._lock:
            self.workspace.append_log(self.record.job_id, record.line, record.level)
            self._emit(job_event(self.record.job_id, record))

    def mesh(self, kind: str, mesh: MeshData, iteration: int) -> None:
        if kind not in MESH_KINDS:
            raise ValueError(f"mesh kind {kind!r} is not one of {MESH_KINDS}")
        mesh.validate(f"{kind} at iteration {iteration}")
        prefix = "preview" if kind == EventKind.PREVIEW_MESH else "final"
        path = self.artifacts_dir / f"{prefix}_{iteration:07d}.npz"
        mesh.write(path)
        stats = {"vertices": mesh.vertex_count, "faces": mesh.face_count,
                 "vertex_colors": mesh.vertex_colors is not None, "textured": mesh.texture_png is not None}
        self._publish(self._ref(path, kind, iteration, stats), kind)
        if kind == EventKind.PREVIEW_MESH:
            for old in sorted(self.artifacts_dir.glob("preview_*.npz"))[:-PREVIEWS_KEPT]:
                old.unlink(missing_ok=True)

    def artifact(self, path: Path, kind: str) -> None:
        path = Path(path).resolve()
        if not path.is_relative_to(self.job_dir.resolve()):
            raise ValueError(f"artifact {path} lies outside the job folder {self.job_dir}")
        if not path.is_relative_to(self.artifacts_dir.resolve()):
            copy = self.artifacts_dir / path.name
            staging = copy.with_name(copy.name + ".partial")
            shutil.copyfile(path, staging)
            staging.replace(copy)
            path = copy
        iteration = int(self.record.progress.get("iteration", 0))
        self._publish(self._ref(path, kind, iteration, {}), EventKind.ARTIFACT)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # --- internals ------------------------------------------------------------------------------------------
    def _ref(self, path: Path, kind: str, iteration: int, stats: dict[str, Any]) -> ArtifactRef:
        name = path.resolve().relative_to(self.artifacts_dir.resolve()).as_posix()
        return ArtifactRef(name=name, size=path.stat().st_size, sha256=file_sha256(path), kind=kind,
                           iteration=iteration, stats=stats)

    def _publish(self, ref: ArtifactRef, event_kind: str) -> None:
        with self._lock:
            self.record.artifacts[ref.kind] = ref.to_json()
            self.workspace.save(self.record)
            self._emit(job_event(self.record.job_id, ArtifactEvent(event_kind, ref)))
