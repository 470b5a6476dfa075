"""The backend's folder on disk: one folder per job, so a restarted server knows every job it ever ran.

Layout::

    <workspace>/jobs/<job_id>/job.json       config, state, progress, latest artifacts (written atomically)
                              log.txt        every log line, appended
                              checkpoints/   whatever the job kind needs to resume
                              artifacts/     files clients may fetch (meshes, reports)
    <workspace>/uploads/                     see uploads.py
"""
from __future__ import annotations

import json
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...shared.atomic_write import TEMP_FILE, write_json_atomic
from ...shared.protocol import MAX_ERROR_MESSAGE_CHARS, JobState, clip_text

try:
    import fcntl
except ImportError:       # Windows
    fcntl = None
    import msvcrt

JOB_FILE_FORMAT = 1
#: Job ids are folder names: letters, digits, '-' and '_' only.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: State transitions kept per job (the newest win), so a listing can say a job was interrupted and resumed.
HISTORY_LIMIT = 50


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class JobRecord:
    """Everything job.json holds: what a client sees of a job, now or after a server restart."""

    job_id: str
    kind: str
    config: dict[str, Any]
    state: str = JobState.QUEUED
    reason: str = ""
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    progress: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # latest ArtifactRef JSON per kind
    error: dict[str, str] | None = None                                 # message, traceback
    attempts: int = 0                                                   # times a worker started it
    crashes: int = 0                                                    # times the server died while it ran
    history: list[dict[str, str]] = field(default_factory=list)         # [{state, reason, time}]
    owner: str | None = None          # the submitter's CURVE key, "local" without keys; None: before owners
    device: str | None = None         # where the job runs or last ran ("cuda:1", "cpu"); None: not started yet
    devices: list[str] = field(default_factory=list)   # all of them: a pool job's ("cuda:0", "cuda:1"), rank 0's first

    def set_state(self, state: str, reason: str = "") -> None:
        self.state, self.reason, self.updated = state, reason, now_iso()
        self.history.append({"state": state, "reason": reason, "time": self.updated})
        del self.history[:-HISTORY_LIMIT]

    def to_json(self) -> dict[str, Any]:
        return {"format": JOB_FILE_FORMAT, "job_id": self.job_id, "kind": self.kind, "config": self.config,
                "state": self.state, "reason": self.reason, "created": self.created, "updated": self.updated,
                "progress": self.progress, "artifacts": self.artifacts, "error": self.error,
                "attempts": self.attempts, "crashes": self.crashes, "history": self.history, "owner": self.owner,
                "device": self.device, "devices": self.devices}

    def snapshot(self, *, with_config: bool = True) -> dict[str, Any]:
        """What JOB and JOBS replies carry: the job file minus its bookkeeping, its error message clipped (a
        listing of many jobs must fit one header)."""
        data = self.to_json()
        del data["format"], data["owner"]
        if self.error:
            data["error"] = {**self.error, "message": clip_text(self.error.get("message", ""),
                                                                MAX_ERROR_MESSAGE_CHARS), "traceback": ""}
        if not with_config:
            del data["config"], data["history"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobRecord":
        if data.get("format") != JOB_FILE_FORMAT:
            raise ValueError(f"job file format {data.get('format')!r} is not {JOB_FILE_FORMAT}")
        if data.get("state") not in JobState.ALL:
            raise ValueError(f"state {data.get('state')!r} is not a job state")
        return cls(job_id=str(data["job_id"]), kind=str(data["kind"]), config=dict(data["config"]),
                   state=data["state"], reason=str(data.get("reason", "")), created=str(data.get("created", "")),
                   updated=str(data.get("updated", "")), progress=dict(data.get("progress") or {}),
                   artifacts=dict(data.get("artifacts") or {}), error=data.get("error"),
                   attempts=int(data.get("attempts", 0)), crashes=int(data.get("crashes", 0)),
                   history=list(data.get("history") or []), owner=data.get("owner"),
                   device=data.get("device"),
                   devices=list(data.get("devices") or ([data["device"]] if data.get("device") else [])))


class Workspace:
    """The server's folder: creates job folders and reads them back."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.jobs_dir = self.root / "jobs"
        self.uploads_dir = self.root / "uploads"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = None

    def lock(self) -> None:
        """Claim the workspace for this server: a second server on it would run the same jobs twice."""
        handle = open(self.root / "server.lock", "a+")
        try:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            handle.close()
            raise RuntimeError(f"the workspace {self.root} is in use by another carrara-backend; stop that one or "
                               "choose another --workspace") from None
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()       # closing releases the lock
            self._lock_file = None

    def remove_stale_temp_files(self) -> list[Path]:
        """Remove what interrupted atomic writes left (job files, checkpoints, upload staging): only while this
        server holds the workspace lock and before any job runs, so no write of ours is in progress."""
        stale = [path for folder in (self.jobs_dir, *self.jobs_dir.glob("*"), *self.jobs_dir.glob("*/checkpoints"),
                                     self.uploads_dir / "datasets", self.uploads_dir / "manifests")
                 if folder.is_dir() for path in folder.iterdir() if TEMP_FILE.match(path.name)]
        for path in stale:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
        return stale

    def delete_job(self, job_id: str) -> None:
        """Remove a job's folder: checkpoints, artifacts, log and record."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID_PATTERN.match(job_id):
            raise ValueError(f"job id {job_id!r} is not a job id")
        return self.jobs_dir / job_id

    def artifacts_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "artifacts"

    def create_job(self, kind: str, config: dict[str, Any]) -> JobRecord:
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        folder = self.job_dir(job_id)
        for sub in ("checkpoints", "artifacts"):
            (folder / sub).mkdir(parents=True)
        record = JobRecord(job_id=job_id, kind=kind, config=config)
        record.set_state(JobState.QUEUED, "submitted")
        self.save(record)
        return record

    def save(self, record: JobRecord) -> None:
        write_json_atomic(self.job_dir(record.job_id) / "job.json", record.to_json())

    def log_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "log.txt"

    def append_log(self, job_id: str, line: str, level: str) -> None:
        with open(self.job_dir(job_id) / "log.txt", "a", encoding="utf-8") as handle:
            handle.write(f"{now_iso()} {level.upper():7s} {line}\n")

    def load_jobs(self) -> list[JobRecord]:
        """Every readable job, oldest first; an unreadable job.json is reported and skipped, never deleted."""
        records = []
        for path in sorted(self.jobs_dir.glob("*/job.json")):
            try:
                records.append(JobRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                print(f"carrara-backend: skipping {path}: {exc}", file=sys.stderr)
        records.sort(key=lambda r: (r.created, r.job_id))
        return records
