"""The job queue: one worker thread per device (each GPU, or the CPU) takes the next queued job, so a host with
N GPUs runs N jobs at once, one per GPU, and the others wait their turn; a job's record names its devices.

A reconstruction that asks for ``gpus`` = N > 1 runs on a pool of N devices (its ranks train under torchrun). The
rule, first come first served: jobs start in the order they were queued. When the oldest queued job needs a pool,
each worker that comes free joins the pool instead of taking a later job, until N have joined; the last to join
runs the job and the others are held until it ends. Workers not in the pool keep running their jobs, and the
later jobs start once the pool job has started. A pool fills as soon as N running jobs end, so no job waits
forever, and nothing jumps the queue.

Jobs survive the server: a job found ``running`` at start-up was cut short by a crash or a kill, so it becomes
``interrupted`` and is queued again to resume from its last checkpoint, as is a job a clean stop interrupted.
A job that took the server down ``MAX_CRASHES`` times is not retried by itself again.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ...shared.jobs import config_from_json, config_to_json
from ...shared.protocol import (MAX_HEADER_BYTES, ErrorCode, ErrorEvent, JobState, Message, ProtocolError,
                                StateEvent, clip_text, job_event, require)
from ..jobs.failure import JobFailed
from ..jobs.kinds import registered_kinds, runner
from .internal_errors import log_internal_error
from .job_context import JobContext
from .quotas import Quotas
from .uploads import UploadStore
from .workspace import JobRecord, Workspace

MAX_CRASHES = 3
#: JOBS replies carry at most this many jobs (newest first), and no more than fill half a header.
LIST_LIMIT = 200
LIST_BYTES = MAX_HEADER_BYTES // 2
TERMINAL = frozenset({JobState.FINISHED, JobState.FAILED, JobState.CANCELLED})


class JobManager:
    """Job records, the queue and the worker thread; every method is safe to call from the server loop."""

    def __init__(self, workspace: Workspace, uploads: UploadStore, emit: Callable[[Message], None], *,
                 local_paths: bool = True, allowed_roots: list[Path] | None = None, quotas: Quotas = Quotas()):
        self.workspace = workspace
        self.uploads = uploads
        self.local_paths = local_paths      # may clients name folders on this machine, or only uploads?
        #: folders a dataset path may lie in (None: any the server's user can read)
        self.allowed_roots = None if allowed_roots is None else [Path(r).resolve() for r in allowed_roots]
        self.quotas = quotas
        self._emit = emit
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._records: dict[str, JobRecord] = {}
        self._queue: deque[str] = deque()
        self._running: dict[str, threading.Event] = {}     # job id -> its stop request, one per running job
        self._devices: list[str] = []                        # worker index -> its device
        self._gathering: list[int] = []                      # workers idle and held for the queue's pool job
        self._held: dict[int, str] = {}                      # worker -> the pool job it serves on another worker
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._recover()

    # --- lifecycle ------------------------------------------------------------------------------------------
    def _recover(self) -> None:
        for record in self.workspace.load_jobs():
            self._records[record.job_id] = record
            if record.state == JobState.RUNNING:
                record.crashes += 1
                record.set_state(JobState.INTERRUPTED, "the server stopped while the job ran")
                if record.crashes >= MAX_CRASHES:
                    record.error = ErrorEvent(f"the backend stopped {record.crashes} times while this job ran; it "
                                              "is not retried by itself again (resume it to try once more)").to_json()
                    record.set_state(JobState.FAILED, "stopped the backend repeatedly")
                    self.workspace.save(record)
                    continue
            if record.state == JobState.INTERRUPTED:
                record.set_state(JobState.QUEUED, "resuming from the last checkpoint after the server restarted")
            if record.state == JobState.QUEUED:
                self.workspace.save(record)
                self._queue.append(record.job_id)

    def start(self, devices: list[str]) -> None:
        """Start one worker per device of ``devices`` (known once the server has probed its hardware)."""
        with self._lock:
            self._devices = list(devices)
        self._threads = [threading.Thread(target=self._work, args=(index,), daemon=True,
                                          name=f"carrara-job-worker-{index}-{device}")
                         for index, device in enumerate(devices)]
        for thread in self._threads:
            thread.start()

    def shutdown(self, timeout_s: float) -> None:
        """Ask the running jobs to checkpoint and stop; they end ``interrupted`` and resume at the next start."""
        with self._lock:
            self._stopping = True
            for stop in self._running.values():
                stop.set()
            self._wake.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for job_id in list(self._running):      # the job ignored the request; record what happened anyway
                self._change(self._records[job_id], JobState.INTERRUPTED, f"the server stopped; the job did not "
                                                                          f"stop within {timeout_s:.0f} s")

    # --- requests -------------------------------------------------------------------------------------------
    def submit(self, kind: str, config: Any, owner: str | None = None) -> dict[str, Any]:
        parsed = config_from_json(kind, config)
        if kind not in registered_kinds():
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"job kind {kind!r} is not available on this backend yet "
                                                       f"(it runs: {', '.join(registered_kinds())})")
        self._check_sources(parsed, owner)
        with self._lock:
            self._check_pool(getattr(parsed, "gpus", 1))
            if len(self._queue) >= self.quotas.queued_jobs:
                raise ProtocolError(ErrorCode.QUOTA, f"{len(self._queue)} jobs are queued already, the most this "
                                                     "backend takes; wait for one to finish or cancel one")
            record = self.workspace.create_job(kind, config_to_json(parsed))
            record.owner = owner
            self.workspace.save(record)
            self._records[record.job_id] = record
            self._queue.append(record.job_id)
            self._wake.notify_all()
            return record.snapshot()

    def _check_pool(self, gpus: int) -> None:
        """A job may pool as many devices as the server has workers, no more."""
        if gpus > 1 and gpus > len(self._devices):
            gpu_host = self._devices and all(d.startswith("cuda:") for d in self._devices)
            raise ProtocolError(ErrorCode.BAD_FIELD, f"config field 'gpus' {gpus}: this backend has "
                                                     f"{len(self._devices)} {'GPUs' if gpu_host else 'job devices'} "
                                                     f"({', '.join(self._devices) or 'none yet'}); ask for "
                                                     f"{max(len(self._devices), 1)} or fewer")

    def _check_sources(self, config: Any, owner: str | None) -> None:
        """Refuse, before queueing, a job whose input this backend cannot read: the client can still fix it."""
        dataset = getattr(config, "dataset", None)
        if dataset is not None and dataset.upload_id is not None:
            self.uploads.dataset_path(dataset.upload_id)
        elif dataset is not None:
            if not self.local_paths:
                raise ProtocolError(ErrorCode.NEEDS_UPLOAD, "this backend serves uploaded datasets only "
                                                            f"(--uploads-only); upload {dataset.path!r} first")
            if not Path(dataset.path).exists():
                raise ProtocolError(ErrorCode.NEEDS_UPLOAD, f"the backend cannot see {dataset.path!r} (a remote "
                                                            "backend, or another machine's folder); upload it")
            resolved = Path(dataset.path).resolve()
            if self.allowed_roots is not None and not any(resolved.is_relative_to(r) for r in self.allowed_roots):
                raise ProtocolError(ErrorCode.NEEDS_UPLOAD, f"config field 'dataset.path' {dataset.path!r} lies "
                                                            "outside the folders this backend may read "
                                                            "(its --allow-root list); upload it")
        self._check_output(getattr(config, "output_path", None))
        source = getattr(config, "source_job_id", None)
        if source is not None and self.record(source, owner).kind != "reconstruct":
            raise ProtocolError(ErrorCode.BAD_FIELD, f"config field 'source_job_id': job {source!r} is not a "
                                                     "reconstruction")

    def _check_output(self, output_path: str | None) -> None:
        """A job may write where its config says only on a backend whose clients may name its folders."""
        if output_path is None or (self.local_paths and self.allowed_roots is None):
            return
        try:
            resolved: Path | None = Path(output_path).resolve()
        except (OSError, ValueError):       # e.g. a NUL character: no folder of ours
            resolved = None
        if not self.local_paths or resolved is None or not any(resolved.is_relative_to(r) for r in self.allowed_roots):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"config field 'output_path' {output_path!r}: this backend does "
                                                     "not let clients write its folders (--uploads-only or outside "
                                                     "--allow-root); leave it out and fetch the result from the job")

    def record(self, job_id: str | None, owner: str | None = None) -> JobRecord:
        """The job ``owner`` may see (None: any job); another client's job is as unknown as a missing one."""
        if job_id is None:
            raise ProtocolError(ErrorCode.BAD_FIELD, "header field 'job_id' is missing: name the job")
        record = self._records.get(job_id)
        if record is None or not _visible(record, owner):
            raise ProtocolError(ErrorCode.NO_SUCH_JOB, f"no job {clip_text(job_id, 80)!r} on this backend")
        return record

    def snapshot(self, job_id: str | None, owner: str | None = None) -> dict[str, Any]:
        with self._lock:
            return self.record(job_id, owner).snapshot()

    def listing(self, owner: str | None = None) -> dict[str, Any]:
        """The newest jobs ``owner`` may see, as many as fit ``LIST_BYTES``; ``total`` counts them all."""
        with self._lock:
            records = sorted((r for r in self._records.values() if _visible(r, owner)),
                             key=lambda r: (r.created, r.job_id), reverse=True)
            jobs, size = [], 0
            for record in records[:LIST_LIMIT]:
                snapshot = record.snapshot(with_config=False)
                size += len(json.dumps(snapshot))
                if size > LIST_BYTES:
                    break
                jobs.append(snapshot)
            return {"jobs": jobs, "total": len(records)}

    def delete(self, job_id: str | None, owner: str | None = None) -> None:
        """Remove a finished, failed, cancelled or interrupted job and its folder; a queued or running one stays."""
        with self._lock:
            record = self.record(job_id, owner)
            if record.state in JobState.ACTIVE:
                raise ProtocolError(ErrorCode.BAD_STATE, f"job {record.job_id} is {record.state}; cancel it before "
                                                         "removing it")
            del self._records[record.job_id]
            self.workspace.delete_job(record.job_id)

    def prune(self, owner: str | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The retention policy: finished, failed and cancelled jobs not updated for ``keep_days`` (a client may
        ask for fewer, down to 0, for its own jobs) are removed, then uploads no remaining job names and not
        touched for ``keep_days``, then blobs no remaining upload lists."""
        days = self.quotas.keep_days
        if body is not None and body.get("older_than_days") is not None:
            days = require(body, "older_than_days", float)
            if not 0 <= days <= 36500:
                raise ProtocolError(ErrorCode.BAD_FIELD, "body field 'older_than_days' must be from 0 to 36500")
        cutoff = time.time() - days * 86400
        with self._lock:
            old = [r for r in self._records.values() if r.state in TERMINAL and _visible(r, owner)
                   and self._updated_before(r, cutoff)]
            for record in old:
                del self._records[record.job_id]
                self.workspace.delete_job(record.job_id)
            in_use = {(r.config.get("dataset") or {}).get("upload_id") for r in self._records.values()}
        uploads = self.uploads.prune(in_use, time.time() - self.quotas.keep_days * 86400)
        return {"jobs": sorted(r.job_id for r in old), "uploads": uploads}

    def _updated_before(self, record: JobRecord, cutoff: float) -> bool:
        try:
            return (self.workspace.job_dir(record.job_id) / "job.json").stat().st_mtime < cutoff
        except OSError:
            return True

    def cancel(self, job_id: str | None, owner: str | None = None) -> dict[str, Any]:
        with self._lock:
            record = self.record(job_id, owner)
            if record.state == JobState.QUEUED:
                self._queue.remove(record.job_id)
                self._change(record, JobState.CANCELLED, "cancelled before it started")
                self._wake.notify_all()         # workers held for it go back to the queue
            elif record.state == JobState.RUNNING and record.job_id in self._running:
                self._running[record.job_id].set()
                record.reason = "cancel requested; stopping at the next checkpoint"
            else:
                raise ProtocolError(ErrorCode.BAD_STATE, f"job {record.job_id} is {record.state}; only queued or "
                                                         "running jobs can be cancelled")
            return record.snapshot()

    def resume(self, job_id: str | None, owner: str | None = None) -> dict[str, Any]:
        with self._lock:
            record = self.record(job_id, owner)
            if record.state not in JobState.RESUMABLE:
                raise ProtocolError(ErrorCode.BAD_STATE, f"job {record.job_id} is {record.state}; only failed, "
                                                         "cancelled or interrupted jobs can be resumed")
            record.error = None
            record.crashes = 0
            self._change(record, JobState.QUEUED, "resumed; continuing from the last checkpoint")
            self._queue.append(record.job_id)
            self._wake.notify_all()
            return record.snapshot()

    # --- the worker -----------------------------------------------------------------------------------------
    def _change(self, record: JobRecord, state: str, reason: str) -> None:
        """Caller holds the lock: a state change is saved and announced together."""
        record.set_state(state, reason)
        self.workspace.save(record)
        self._emit(job_event(record.job_id, StateEvent(state, reason)))

    def _work(self, worker: int) -> None:
        while True:
            with self._lock:
                taken = None
                while not self._stopping and taken is None:
                    taken = None if worker in self._held else self._take(worker)
                    if taken is None:
                        self._wake.wait()
                if self._stopping:
                    return
                record, pool = taken
                devices = [self._devices[w] for w in pool]
                cancel = threading.Event()
                self._running[record.job_id] = cancel
                record.attempts += 1
                record.device, record.devices = devices[0], devices
                self._change(record, JobState.RUNNING, _start_reason(record))
            state, reason, error = self._run(record, cancel, devices)
            with self._lock:
                if error:
                    record.error = error.to_json()
                    self._emit(job_event(record.job_id, error))
                self._change(record, state, reason)
                del self._running[record.job_id]
                for member in pool:
                    self._held.pop(member, None)
                self._wake.notify_all()

    def _take(self, worker: int) -> tuple[JobRecord, list[int]] | None:
        """Caller holds the lock: the oldest queued job and the workers it runs on, or None while there is none
        or its pool is still gathering (the module's rule). A job that asks for more devices than the server has
        now (a smaller host after a restart) takes them all: its checkpoint resumes on any number of ranks."""
        if not self._queue:
            self._gathering.clear()
            return None
        record = self._records[self._queue[0]]
        need = min(int(record.config.get("gpus", 1)), len(self._devices))
        if need == 1:
            self._gathering.clear()
            self._queue.popleft()
            return record, [worker]
        self._gathering = [w for w in self._gathering if w not in self._held and w != worker] + [worker]
        if len(self._gathering) < need:
            return None
        pool, self._gathering = self._gathering, []
        self._queue.popleft()
        self._held.update((member, record.job_id) for member in pool if member != worker)
        return record, pool

    def _run(self, record: JobRecord, cancel: threading.Event,
             devices: list[str]) -> tuple[str, str, ErrorEvent | None]:
        if record.kind not in registered_kinds():
            return JobState.FAILED, "failed", ErrorEvent(f"job kind {record.kind!r} is not available on this backend")
        config_json = dict(record.config)
        upload_id = (config_json.get("dataset") or {}).get("upload_id")
        roots = self.allowed_roots
        context = JobContext(record, self.workspace, self._lock, self._emit, cancel, roots)
        try:
            if upload_id is not None:     # the engine reads a folder; the record keeps the upload id
                folder = self.uploads.dataset_path(upload_id)
                config_json["dataset"] = {"path": str(folder)}
                context.allowed_roots = [folder.resolve()]     # an upload reads nothing but itself
            if len(devices) == 1 and devices[0].startswith("cuda:") and config_json.get("device") == "cuda":
                config_json["device"] = "auto"          # 'auto' takes the GPU this worker was given, not GPU 0
            run = runner(record.kind)
            run(config_from_json(record.kind, config_json), context.job_dir, context, ",".join(devices))
        except JobFailed as exc:
            return JobState.FAILED, "failed", ErrorEvent(str(exc))
        except ProtocolError as exc:
            return JobState.FAILED, "failed", ErrorEvent(exc.message)
        except Exception as exc:
            return JobState.FAILED, "failed", _crash(exc, record.job_id)
        if cancel.is_set():
            if self._stopping:
                return JobState.INTERRUPTED, "the server stopped; the job resumes from its checkpoint at the " \
                                             "next start", None
            return JobState.CANCELLED, "cancelled", None
        return JobState.FINISHED, "finished", None


def _start_reason(record: JobRecord) -> str:
    reason = "started" if record.attempts == 1 else f"started again (attempt {record.attempts})"
    asked = int(record.config.get("gpus", 1))
    if asked > len(record.devices):
        reason += f" on {len(record.devices)} devices, not the {asked} it asked for: this backend has no more"
    return reason


def _visible(record: JobRecord, owner: str | None) -> bool:
    """Jobs from before owners were recorded stay visible to every client, as they were."""
    return owner is None or record.owner is None or record.owner == owner


def _crash(exc: BaseException, job_id: str) -> ErrorEvent:
    """A bug in a job: the client hears its kind and an error id; the traceback goes to the server's log."""
    error_id = log_internal_error(f"running job {job_id}")
    text = clip_text(f"{type(exc).__name__}: {exc}", 300)
    return ErrorEvent(f"internal error {error_id} in the backend ({text}); its log has the details",
                      error_id=error_id)
