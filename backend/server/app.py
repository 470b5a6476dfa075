"""``carrara-backend serve``: one ROUTER socket, one loop, every request answered, nothing a client sends fatal.

The loop alone touches the socket. It receives a bounded batch of requests, answers each (a bad one gets an
ERROR reply naming the problem, and the loop goes on), forwards job events from the worker thread to the clients
attached to that job, and forgets clients that stopped pinging. SIGINT/SIGTERM end it cleanly: no more requests
are read, the running job checkpoints and ends ``interrupted`` (it resumes at the next start), clients hear so,
and the sockets close.
"""
from __future__ import annotations

import errno
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from ...shared.protocol import (CHUNK_BYTES, HEARTBEAT_INTERVAL_S, HEARTBEAT_TIMEOUT_S, MAX_FRAME_BYTES,
                                MAX_HEADER_BYTES, MAX_MESSAGE_BYTES, MAX_MESSAGE_FRAMES, PROTOCOL_VERSION, ErrorCode,
                                Message, MessageType, ProtocolError, decode, encode, error_reply,
                                peek_request_id, reply_to, require)
from ..jobs.kinds import registered_kinds
from . import capabilities
from .internal_errors import log_internal_error
from .job_queue import JobManager
from .paths import confined_path, safe_relative_path
from .quotas import Quotas
from .security import AuthorizedKeys, check_bind, load_server_keys, secure_socket
from .uploads import UploadStore
from .workspace import Workspace

#: A client silent this long is forgotten (its attachments dropped); a ping after that re-attaches (see PONG).
CLIENT_SILENCE_S = 3 * HEARTBEAT_TIMEOUT_S
#: Seconds a stopping server gives the running job to checkpoint.
JOB_STOP_TIMEOUT_S = 30.0
POLL_MS = 50
REQUESTS_PER_TURN = 64
#: The transport drops (and disconnects) frames above this; smaller oversized frames get an OVERSIZED reply.
TRANSPORT_FRAME_LIMIT = 2 * MAX_FRAME_BYTES


#: Who a client is when the server runs without CURVE keys: whoever can reach a loopback socket, one user.
LOCAL_OWNER = "local"


@dataclass
class _Client:
    last_seen: float
    owner: str = LOCAL_OWNER              # the client's CURVE public key (Z85), or LOCAL_OWNER without keys
    attached: set[str] = field(default_factory=set)


class Server:
    """The job server; ``run()`` serves until ``stop()`` (or a signal, through ``serve``)."""

    def __init__(self, bind: str, workspace: Path, keys_dir: Path | None = None, device: str = "auto", *,
                 uploads_only: bool = False, allowed_roots: list[Path] | None = None, shared_jobs: bool = False,
                 quotas: Quotas = Quotas()):
        check_bind(bind, keys_dir)
        if keys_dir is not None:
            load_server_keys(keys_dir)
        self.bind = bind
        self.keys_dir = keys_dir
        self.requested_device = device
        self.shared_jobs = shared_jobs        # every client sees every job (one team on one backend)
        self.workspace = Workspace(workspace)
        self.workspace.lock()
        self.workspace.remove_stale_temp_files()
        self.uploads = UploadStore(self.workspace.uploads_dir, quotas)
        self._events: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.jobs = JobManager(self.workspace, self.uploads, self._events.put, local_paths=not uploads_only,
                               allowed_roots=allowed_roots, quotas=quotas)
        self.jobs.prune()
        self._authorized: AuthorizedKeys | None = None
        self._clients: dict[bytes, _Client] = {}
        self._stop = threading.Event()
        self._socket: zmq.Socket | None = None
        self._capabilities: dict[str, Any] | None = None
        self._probe_error: str | None = None
        self._waiting_hellos: list[tuple[bytes, Message]] = []
        self._handlers: dict[str, Callable[[bytes, Message], Message | None]] = {
            MessageType.HELLO: self._hello, MessageType.PING: self._ping, MessageType.SUBMIT: self._submit,
            MessageType.CANCEL: self._cancel, MessageType.RESUME: self._resume,
            MessageType.LIST_JOBS: self._list_jobs, MessageType.ATTACH: self._attach,
            MessageType.DETACH: self._detach, MessageType.FETCH: self._fetch,
            MessageType.UPLOAD_BEGIN: self._upload_begin, MessageType.UPLOAD_CHUNK: self._upload_chunk,
            MessageType.UPLOAD_COMMIT: self._upload_commit, MessageType.DELETE_JOB: self._delete_job,
            MessageType.FETCH_LOG: self._fetch_log, MessageType.PRUNE: self._prune,
        }

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Serve until stopped; 0 after a clean stop, 2 when the address cannot be bound or the probe fails."""
        context = zmq.Context()
        socket = context.socket(zmq.ROUTER)
        socket.linger = 0
        socket.router_mandatory = True      # sending to a vanished client raises, so we forget it
        socket.maxmsgsize = TRANSPORT_FRAME_LIMIT
        authenticator = secure_socket(context, socket, self.keys_dir) if self.keys_dir else None
        self._authorized = AuthorizedKeys(authenticator, self.keys_dir) if authenticator else None
        try:
            socket.bind(self.bind)
        except zmq.ZMQError as exc:
            print(f"carrara-backend: cannot bind {self.bind}: {exc}", file=sys.stderr)
            return 2
        else:
            self._socket = socket
            threading.Thread(target=self._probe, name="carrara-capabilities", daemon=True).start()
            print(f"carrara-backend: serving {self.bind} (workspace {self.workspace.root}"
                  f"{', CURVE keys ' + str(self.keys_dir) if self.keys_dir else ''})", file=sys.stderr, flush=True)
            return self._loop(socket)
        finally:
            self.jobs.shutdown(JOB_STOP_TIMEOUT_S)
            if self._socket is not None:
                self._flush_events()       # clients hear that the job was interrupted
            socket.close(linger=200)
            if authenticator:
                authenticator.stop()
            context.term()
            self.workspace.unlock()
            if self._socket is not None:
                print("carrara-backend: stopped", file=sys.stderr, flush=True)

    # --- the loop -------------------------------------------------------------------------------------------
    def _loop(self, socket: zmq.Socket) -> int:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        started = False
        next_expiry = 0.0
        while not self._stop.is_set():
            if not started and (self._capabilities or self._probe_error):
                if self._probe_error:
                    print(f"carrara-backend: {self._probe_error}", file=sys.stderr)
                    return 2
                self.jobs.start(self._capabilities["job_devices"])
                started = True
                for identity, hello in self._waiting_hellos:
                    self._send(identity, self._welcome(hello))
                self._waiting_hellos.clear()
            self._flush_events()
            if poller.poll(POLL_MS):
                for _ in range(REQUESTS_PER_TURN):
                    try:
                        received = self._receive(socket)
                    except zmq.Again:
                        break
                    self._handle(*received)
            now = time.monotonic()
            if now >= next_expiry:
                next_expiry = now + HEARTBEAT_INTERVAL_S
                if self._authorized:
                    self._authorized.reload_if_changed()
                for identity in [i for i, c in self._clients.items() if now - c.last_seen > CLIENT_SILENCE_S]:
                    del self._clients[identity]
        return 0

    def _probe(self) -> None:
        """Import torch and look at the GPU off the loop: pings are answered meanwhile, hellos wait for it."""
        try:
            caps = capabilities.detect()
            caps["device"] = capabilities.choose_device(self.requested_device, caps)
            caps["job_devices"] = capabilities.job_devices(caps)
            self._capabilities = caps
        except Exception as exc:
            self._probe_error = f"capability probe failed: {exc}"

    @staticmethod
    def _receive(socket: zmq.Socket) -> tuple[bytes, list[memoryview], str, ProtocolError | None]:
        """One message, frame by frame and without copies: frames past the message limits are dropped as they
        are read, so a message of a thousand frames costs no more memory than the limits allow."""
        identity = socket.recv(zmq.NOBLOCK)
        payload: list[memoryview] = []
        owner, total, count = LOCAL_OWNER, 0, 0
        while socket.getsockopt(zmq.RCVMORE):
            frame = socket.recv(copy=False)
            count += 1
            total += len(frame)
            if count == 1:
                try:
                    owner = frame.get("User-Id") or LOCAL_OWNER
                except zmq.ZMQError:
                    pass
            if count <= MAX_MESSAGE_FRAMES and total <= MAX_MESSAGE_BYTES:
                payload.append(frame.buffer)
        if count > MAX_MESSAGE_FRAMES or total > MAX_MESSAGE_BYTES:
            return identity, payload[:1], owner, ProtocolError(
                ErrorCode.OVERSIZED, f"a message of {count} frames and {total} bytes is over the limits of "
                                     f"{MAX_MESSAGE_FRAMES} frames and {MAX_MESSAGE_BYTES} bytes; it was discarded")
        return identity, payload, owner, None

    def _handle(self, identity: bytes, payload: list[memoryview], owner: str = LOCAL_OWNER,
                refused: ProtocolError | None = None) -> None:
        client = self._clients.setdefault(identity, _Client(time.monotonic(), owner))
        client.last_seen = time.monotonic()
        request: Message | None = None
        try:
            if refused is not None:
                raise refused
            request = decode(payload)
            if request.type not in MessageType.REQUESTS:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE,
                                    f"{request.type!r} is something the server sends, not a request")
            reply = self._handlers[request.type](identity, request)
        except ProtocolError as exc:
            reply = error_reply(exc.code, exc.message, request_id=request.request_id if request else
                                peek_request_id(payload), job_id=request.job_id if request else None)
        except Exception:    # a bug: the client gets an id, the log the traceback; everyone else is served on
            error_id = log_internal_error(f"answering {request.type if request else 'a message'}")
            reply = error_reply(ErrorCode.INTERNAL, f"internal error {error_id} in the backend; its log has the "
                                                    "details", request_id=request.request_id if request else
                                peek_request_id(payload), job_id=request.job_id if request else None,
                                error_id=error_id)
        if reply is not None:
            self._send(identity, reply)

    def _send(self, identity: bytes, message: Message) -> None:
        try:
            frames = encode(message)
        except (ProtocolError, ValueError):
            error_id = log_internal_error(f"encoding a {message.type} reply")
            frames = encode(error_reply(ErrorCode.INTERNAL, f"internal error {error_id}: the reply could not be "
                                                            "encoded; the backend's log has the details",
                                        request_id=message.request_id, job_id=message.job_id, error_id=error_id))
        self._send_frames(identity, frames)

    def _owner(self, identity: bytes) -> str | None:
        """Whose jobs this client may see: its own, or (``--shared-jobs``) everyone's."""
        return None if self.shared_jobs else self._clients[identity].owner

    def _send_frames(self, identity: bytes, frames: list[Any]) -> None:
        try:
            self._socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            print("carrara-backend: a client is not reading; a message to it was dropped", file=sys.stderr)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            self._clients.pop(identity, None)   # it disconnected

    def _flush_events(self) -> None:
        """Send queued job events to the clients attached to their job (before any new snapshot is taken)."""
        while True:
            try:
                message = self._events.get_nowait()
            except queue.Empty:
                return
            try:
                frames = encode(message)
            except (ProtocolError, ValueError):     # never fatal: the event is dropped, the loop goes on
                log_internal_error(f"encoding a {message.body.get('event')} event of job {message.job_id}")
                continue
            for identity in [i for i, c in self._clients.items() if message.job_id in c.attached]:
                self._send_frames(identity, frames)

    # --- handlers: each returns the reply, or raises ProtocolError ------------------------------------------
    def _welcome(self, request: Message) -> Message:
        return reply_to(request, MessageType.WELCOME, {
            "protocol": PROTOCOL_VERSION, "server_version": capabilities.backend_version(),
            "capabilities": self._capabilities, "job_kinds": registered_kinds(),
            "workspace": str(self.workspace.root),
            "limits": {"chunk_bytes": CHUNK_BYTES, "max_frame_bytes": MAX_FRAME_BYTES,
                       "max_header_bytes": MAX_HEADER_BYTES, "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
                       "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S}})

    def _hello(self, identity: bytes, request: Message) -> Message | None:
        if self._capabilities is None:
            self._waiting_hellos.append((identity, request))
            return None
        return self._welcome(request)

    def _ping(self, identity: bytes, request: Message) -> Message:
        return reply_to(request, MessageType.PONG, {"attached": sorted(self._clients[identity].attached)})

    def _submit(self, identity: bytes, request: Message) -> Message:
        snapshot = self.jobs.submit(require(request.body, "kind", str), require(request.body, "config", dict),
                                    owner=self._clients[identity].owner)
        self._clients[identity].attached.add(snapshot["job_id"])   # the submitter hears about its job
        reply = reply_to(request, MessageType.JOB, {"job": snapshot})
        reply.job_id = snapshot["job_id"]
        return reply

    def _cancel(self, identity: bytes, request: Message) -> Message:
        return reply_to(request, MessageType.JOB, {"job": self.jobs.cancel(request.job_id, self._owner(identity))})

    def _resume(self, identity: bytes, request: Message) -> Message:
        return reply_to(request, MessageType.JOB, {"job": self.jobs.resume(request.job_id, self._owner(identity))})

    def _list_jobs(self, identity: bytes, request: Message) -> Message:
        return reply_to(request, MessageType.JOBS, self.jobs.listing(self._owner(identity)))

    def _attach(self, identity: bytes, request: Message) -> Message:
        self._flush_events()     # older events go out first, so none arrives after the newer snapshot
        snapshot = self.jobs.snapshot(request.job_id, self._owner(identity))
        self._clients[identity].attached.add(snapshot["job_id"])
        return reply_to(request, MessageType.JOB, {"job": snapshot})

    def _detach(self, identity: bytes, request: Message) -> Message:
        self.jobs.record(request.job_id, self._owner(identity))
        self._clients[identity].attached.discard(request.job_id)
        return reply_to(request, MessageType.ACK)

    def _fetch(self, identity: bytes, request: Message) -> Message:
        self.jobs.record(request.job_id, self._owner(identity))
        name = safe_relative_path(request.body.get("name"), "body field 'name'")
        path = confined_path(self.workspace.artifacts_dir(request.job_id), name, "artifact name")
        if not path.is_file():
            raise ProtocolError(ErrorCode.NO_SUCH_ARTIFACT, f"job {request.job_id} has no artifact {str(name)!r}")
        return self._chunk_of(request, path, str(name))

    def _fetch_log(self, identity: bytes, request: Message) -> Message:
        self.jobs.record(request.job_id, self._owner(identity))
        path = self.workspace.job_dir(request.job_id) / "log.txt"
        if not path.is_file():
            path.touch()       # a job that has not logged yet has an empty log
        return self._chunk_of(request, path, "log.txt")

    @staticmethod
    def _chunk_of(request: Message, path: Path, name: str) -> Message:
        """A CHUNK reply with the bytes of ``path`` the request's ``offset`` and ``length`` ask for."""
        offset, length = require(request.body, "offset", int), require(request.body, "length", int)
        if not 0 < length <= CHUNK_BYTES:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"body field 'length' must be from 1 to {CHUNK_BYTES} bytes")
        size = path.stat().st_size
        if not 0 <= offset <= size:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"offset {offset} lies outside {name} ({size} bytes)")
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        return reply_to(request, MessageType.CHUNK, {"name": name, "offset": offset, "size": size},
                        {"data": np.frombuffer(data, np.uint8)})

    def _upload_begin(self, identity: bytes, request: Message) -> Message:
        files = request.body.get("files")
        if "files" in request.arrays:       # a long file list travels as an array of UTF-8 JSON
            files = self.uploads.file_list_from_array(request.arrays["files"])
        return reply_to(request, MessageType.UPLOAD_STATUS, self.uploads.begin(files))

    def _upload_chunk(self, identity: bytes, request: Message) -> Message:
        status = self.uploads.chunk(request.body.get("sha256"), require(request.body, "offset", int),
                                    request.arrays.get("data"))
        return reply_to(request, MessageType.UPLOAD_STATUS, status)

    def _upload_commit(self, identity: bytes, request: Message) -> Message:
        return reply_to(request, MessageType.UPLOAD_STATUS, self.uploads.commit(request.body.get("upload_id")))

    def _delete_job(self, identity: bytes, request: Message) -> Message:
        self.jobs.delete(request.job_id, self._owner(identity))
        for client in self._clients.values():
            client.attached.discard(request.job_id)
        return reply_to(request, MessageType.ACK)

    def _prune(self, identity: bytes, request: Message) -> Message:
        return reply_to(request, MessageType.PRUNED, self.jobs.prune(self._owner(identity), request.body))


def serve(bind: str, workspace: Path, keys_dir: Path | None, device: str, uploads_only: bool = False, *,
          allowed_roots: list[Path] | None = None, shared_jobs: bool = False, quotas: Quotas = Quotas()) -> int:
    """The ``serve`` verb: run until SIGINT/SIGTERM; 0 after a clean stop, 2 when it cannot start."""
    try:
        server = Server(bind, workspace, keys_dir, device, uploads_only=uploads_only, allowed_roots=allowed_roots,
                        shared_jobs=shared_jobs, quotas=quotas)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"carrara-backend: {exc}", file=sys.stderr)
        return 2
    previous = {sig: signal.signal(sig, lambda *_: server.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
