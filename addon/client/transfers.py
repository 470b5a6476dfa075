"""Files that cross the connection in chunks: artifacts the backend made, datasets the backend cannot read.

Both are driven by ``step(connection)`` calls from the pump (or a script's loop), keep only a small window of
chunks in flight, and survive a dropped connection: they notice the connection's ``generation`` change and go on
from the last byte that arrived. No bpy here.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable, Mapping, Protocol, TypeVar

import numpy as np

from ...shared import protocol as p
from ...shared.checksum import file_sha256
from .connection import Connection, ConnectionState


class TransferState:
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class _Stepped(Protocol):
    state: str

    def step(self, connection: Connection) -> None: ...


Key = TypeVar("Key")
Transfer = TypeVar("Transfer", bound=_Stepped)


def step_transfers(transfers: dict[Key, Transfer], connection: Connection) -> list[tuple[Key, Transfer]]:
    """Advance every transfer by one step; the ones that ended (done or failed) leave ``transfers`` and are returned,
    for the caller to land on their runs."""
    ended = []
    for key, transfer in list(transfers.items()):
        transfer.step(connection)
        if transfer.state != TransferState.RUNNING:
            del transfers[key]
            ended.append((key, transfer))
    return ended


class ArtifactDownload:
    """Pull one artifact into ``destination``: chunks go to ``<destination>.partial``, which becomes the file only
    once its SHA-256 matches the ArtifactRef, so nothing ever reads half a mesh or a corrupted one."""

    def __init__(self, job_id: str, ref: p.ArtifactRef, destination: Path, *, window: int = 3,
                 chunk_bytes: int = p.CHUNK_BYTES):
        self.job_id, self.ref, self.destination = job_id, ref, Path(destination)
        self.partial = self.destination.with_name(self.destination.name + ".partial")
        self.window, self.chunk_bytes = window, min(chunk_bytes, p.CHUNK_BYTES)
        self.state, self.error = TransferState.RUNNING, ""
        self._generation = -1
        self._in_flight: dict[str, int] = {}     # request id -> offset
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        if self.destination.is_file() and self.destination.stat().st_size == ref.size and \
                file_sha256(self.destination) == ref.sha256:
            self.state, self.received = TransferState.DONE, ref.size    # fetched before, e.g. by an earlier session
            return
        if self.partial.is_file() and self.partial.stat().st_size > ref.size:
            self.partial.unlink()
        self.received = self.partial.stat().st_size if self.partial.is_file() else 0
        self._next = self.received

    def step(self, connection: Connection) -> None:
        """Keep ``window`` fetches in flight; resume from the received bytes after a reconnect."""
        if self.state != TransferState.RUNNING or connection.state != ConnectionState.CONNECTED:
            return
        if connection.generation != self._generation:
            self._generation = connection.generation
            self._in_flight.clear()
            self._next = self.received
        if self.received == self.ref.size:
            self._finish()
            return
        while len(self._in_flight) < self.window and self._next < self.ref.size:
            length = min(self.chunk_bytes, self.ref.size - self._next)
            request_id = connection.fetch(self.job_id, self.ref.name, self._next, length, self._on_reply)
            self._in_flight[request_id] = self._next
            self._next += length

    def _on_reply(self, reply: p.Message) -> None:
        offset = self._in_flight.pop(reply.request_id, None)
        if offset is None or self.state != TransferState.RUNNING:
            return
        if reply.type == p.MessageType.ERROR:
            self._fail(f"fetching {self.ref.name} of job {self.job_id}: {reply.body.get('message')}")
            return
        data = reply.arrays.get("data")
        if reply.type != p.MessageType.CHUNK or data is None or offset != self.received or \
                data.nbytes != min(self.chunk_bytes, self.ref.size - offset):
            self._fail(f"{self.ref.name} of job {self.job_id} arrived out of shape (offset {offset}, "
                       f"{getattr(data, 'nbytes', 0)} bytes); it changed on the backend or the link garbled it")
            return
        with open(self.partial, "r+b" if self.partial.exists() else "wb") as handle:
            handle.seek(offset)         # at its place, so a stale writer of the same bytes cannot shift the file
            handle.write(memoryview(data))
        self.received += data.nbytes
        if self.received == self.ref.size:
            self._finish()

    def _finish(self) -> None:
        if not self.partial.exists():
            self.partial.touch()      # an empty artifact
        if self.partial.stat().st_size != self.ref.size or file_sha256(self.partial) != self.ref.sha256:
            self.partial.unlink(missing_ok=True)
            self._fail(f"{self.ref.name} of job {self.job_id} does not match its SHA-256; the download was "
                       "discarded")
            return
        os.replace(self.partial, self.destination)
        self.state = TransferState.DONE

    def cancel(self, reason: str) -> None:
        """Give up (e.g. a newer preview superseded this one): replies still in flight are ignored."""
        self.partial.unlink(missing_ok=True)
        self._fail(reason)

    def _fail(self, error: str) -> None:
        self.state, self.error = TransferState.FAILED, error
        self._in_flight.clear()


class DatasetUpload:
    """Send a dataset's files to the backend as content-addressed blobs, then commit them.

    ``files`` maps each path inside the uploaded dataset (e.g. ``images/0001.png``) to the local file, so a model
    and its photos may come from different folders. The SHA-256 of every file is computed on a worker thread
    (hashing gigabytes on Blender's main thread would freeze it); ``step`` does nothing until that is done.
    Blobs the backend holds already are not sent again, and a blob cut short by a lost connection continues
    from the offset the backend reports. ``upload_id`` is set once done: a job config names it as
    ``{"dataset": {"upload_id": ...}}``.
    """

    def __init__(self, files: Mapping[str, Path] | Callable[[], Mapping[str, Path]], *, window: int = 2,
                 chunk_bytes: int = p.CHUNK_BYTES):
        self._files_source = files
        self.files: dict[str, Path] = {}
        self.window, self.chunk_bytes = window, min(chunk_bytes, p.CHUNK_BYTES)
        self.state, self.error = TransferState.RUNNING, ""
        self.upload_id = ""
        self.bytes_sent = 0
        self.total_bytes = 0
        self._manifest: list[list] | None = None
        self._paths_by_sha: dict[str, Path] = {}
        self._todo: list[dict] = []          # [{"sha256", "offset", "size"}], front first
        self._more = False                   # the backend listed only part of the missing blobs
        self._in_flight = 0
        self._generation = -1
        self._waiting = False                # an announce or commit is in flight
        self._hashing = threading.Thread(target=self._prepare, name="carrara-upload-prepare", daemon=True)
        self._hashing.start()

    def _prepare(self) -> None:
        """List (when given a function, e.g. one reading the model) and hash the files, off the main thread."""
        try:
            source = self._files_source() if callable(self._files_source) else self._files_source
            self.files = {name: Path(path) for name, path in sorted(source.items())}
            manifest = [[name, path.stat().st_size, file_sha256(path)] for name, path in self.files.items()]
        except OSError as exc:
            self._fail_now(f"cannot read {exc.filename} to upload it: {exc.strerror}")
            return
        except ValueError as exc:           # the dataset itself is unusable; the message names the file
            self._fail_now(str(exc))
            return
        self._paths_by_sha = {sha: self.files[name] for name, _, sha in manifest}
        self.total_bytes = sum(size for _, size, _ in manifest)
        self._manifest = manifest

    def _fail_now(self, error: str) -> None:
        self.error, self.state = error, TransferState.FAILED

    @property
    def fraction(self) -> float:
        return self.bytes_sent / self.total_bytes if self.total_bytes else 0.0

    def step(self, connection: Connection) -> None:
        if self.state != TransferState.RUNNING or connection.state != ConnectionState.CONNECTED or \
                self._manifest is None:
            return
        if connection.generation != self._generation:    # first step, or reconnected: ask what is missing
            self._generation = connection.generation
            self._in_flight = 0
            self._announce(connection)
            return
        while not self._waiting and self._todo and self._in_flight < self.window:
            blob = self._todo[0]
            length = min(self.chunk_bytes, blob["size"] - blob["offset"])
            with open(self._paths_by_sha[blob["sha256"]], "rb") as handle:
                handle.seek(blob["offset"])
                data = np.frombuffer(handle.read(length), np.uint8)
            connection.request(p.MessageType.UPLOAD_CHUNK, {"sha256": blob["sha256"], "offset": blob["offset"]},
                               arrays={"data": data}, on_reply=self._on_chunk)
            self._in_flight += 1
            self.bytes_sent += length
            blob["offset"] += length
            if blob["offset"] >= blob["size"]:
                self._todo.pop(0)
        if not self._waiting and not self._todo and self._in_flight == 0:
            if self._more:                  # the listed blobs are sent: ask for the rest
                self._announce(connection)
                return
            self._waiting = True
            connection.request(p.MessageType.UPLOAD_COMMIT, {"upload_id": self.upload_id}, on_reply=self._on_commit)

    def _announce(self, connection: Connection) -> None:
        """upload_begin with the file list: in the header when it is short, else as an array of UTF-8 JSON (a
        list of thousands of photos is larger than a header may be)."""
        self._waiting = True
        listing = json.dumps(self._manifest, separators=(",", ":")).encode("utf-8")
        if len(listing) <= p.MAX_HEADER_BYTES // 4:
            connection.request(p.MessageType.UPLOAD_BEGIN, {"files": self._manifest}, on_reply=self._on_begin)
        else:
            connection.request(p.MessageType.UPLOAD_BEGIN, {}, arrays={"files": np.frombuffer(listing, np.uint8)},
                               on_reply=self._on_begin)

    def _on_begin(self, reply: p.Message) -> None:
        self._waiting = False
        if self._check(reply):
            self.upload_id = reply.body["upload_id"]
            self._todo = [dict(blob) for blob in reply.body["missing"]]
            self._more = reply.body.get("missing_total", len(self._todo)) > len(self._todo)

    def _on_chunk(self, reply: p.Message) -> None:
        self._in_flight -= 1
        self._check(reply)

    def _on_commit(self, reply: p.Message) -> None:
        self._waiting = False
        if self._check(reply):
            self.state = TransferState.DONE

    def _check(self, reply: p.Message) -> bool:
        if reply.type == p.MessageType.ERROR:
            self.state = TransferState.FAILED
            self.error = f"uploading {len(self.files)} file(s): {reply.body.get('message')}"
            return False
        return True


class LogDownload:
    """A job's whole log, pulled with ``fetch_log`` one chunk at a time from the start; ``text`` once done. A log
    still growing is read up to the size the last reply gave."""

    def __init__(self, job_id: str, *, chunk_bytes: int = p.CHUNK_BYTES):
        self.job_id, self.chunk_bytes = job_id, min(chunk_bytes, p.CHUNK_BYTES)
        self.state, self.error = TransferState.RUNNING, ""
        self._data = bytearray()
        self._generation = -1
        self._in_flight: str | None = None

    @property
    def text(self) -> str:
        return self._data.decode("utf-8", "replace")

    def step(self, connection: Connection) -> None:
        if self.state != TransferState.RUNNING or connection.state != ConnectionState.CONNECTED:
            return
        if connection.generation != self._generation:        # a reply lost with the old link never comes
            self._generation, self._in_flight = connection.generation, None
        if self._in_flight is None:
            self._in_flight = connection.request(p.MessageType.FETCH_LOG,
                                                 {"offset": len(self._data), "length": self.chunk_bytes},
                                                 job_id=self.job_id, on_reply=self._on_reply)

    def _on_reply(self, reply: p.Message) -> None:
        if reply.request_id != self._in_flight or self.state != TransferState.RUNNING:
            return
        self._in_flight = None
        if reply.type == p.MessageType.ERROR:
            self.state, self.error = TransferState.FAILED, f"the log of job {self.job_id}: {reply.body.get('message')}"
            return
        data, size = reply.arrays.get("data"), reply.body.get("size")
        if reply.type != p.MessageType.CHUNK or data is None or not isinstance(size, int) or \
                reply.body.get("offset") != len(self._data):
            self.state, self.error = TransferState.FAILED, f"the log of job {self.job_id} arrived out of shape"
            return
        self._data += data.tobytes()
        if len(self._data) >= size or not data.nbytes:
            self.state = TransferState.DONE
