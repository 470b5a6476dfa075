"""The add-on's line to the backend: one DEALER socket, driven by ``poll()`` calls that never block Blender.

No bpy here: the pump calls ``poll(budget_s)`` from its timer, tests and scripts call it in a loop. ``poll``
receives for at most ``budget_s``, keeps the heartbeat (a ping every HEARTBEAT_INTERVAL_S; the server is declared
gone after HEARTBEAT_TIMEOUT_S without any message from it), matches replies to request ids, re-attaches to the
jobs this client follows after a reconnect, and returns what the caller must act on: events and replies.

States: ``closed`` (never opened or closed on purpose), ``connecting`` (hello sent, no welcome yet), ``connected``,
``lost`` (silence; ``open()`` again to reconnect), ``incompatible`` (the backend speaks another protocol version).
"""
from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from ...shared import protocol as p


class ConnectionState:
    CLOSED = "closed"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"
    INCOMPATIBLE = "incompatible"


class NotConnectedError(ConnectionError):
    """A request made while there is no usable connection; the message says why."""


class RemoteError(Exception):
    """An ERROR reply: ``code`` is a protocol ErrorCode, ``traceback`` the backend's, when it sent one."""

    def __init__(self, code: str, message: str, traceback: str = ""):
        super().__init__(message)
        self.code, self.message, self.traceback = code, message, traceback

    @classmethod
    def from_reply(cls, reply: p.Message) -> "RemoteError":
        return cls(str(reply.body.get("code", p.ErrorCode.INTERNAL)), str(reply.body.get("message", "")),
                   str(reply.body.get("traceback") or ""))


@dataclass(frozen=True)
class CurveKeys:
    """What a client needs for a CURVE connection: the server's public key and its own key pair (Z85 text)."""

    server_public: bytes
    client_public: bytes
    client_secret: bytes


_Z85_KEY = re.compile(r"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_CERT_FIELD = r'{}\s*=\s*"([^"]{{40}})"'


def _key_source(text: str) -> tuple[str, str]:
    """The text of a key setting: the file it names (like 'client.key_secret') or the text as typed."""
    text = text.strip()
    if text and len(text) != 40 and "\n" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"{path}: no such key file")
        return path.read_text(encoding="utf-8"), str(path)
    return text, "the key text"


def _cert_field(text: str, field: str, where: str) -> bytes:
    match = re.search(_CERT_FIELD.format(field), text)
    if not match:
        raise ValueError(f"{where} holds no {field}; use the files made by 'carrara-backend keys'")
    return match.group(1).encode("ascii")


def load_curve_keys(server_key: str, client_keys: str) -> CurveKeys | None:
    """Keys from the preferences: each setting is a key file's path or its text. Both empty: no CURVE."""
    if not server_key.strip() and not client_keys.strip():
        return None
    if not server_key.strip() or not client_keys.strip():
        raise ValueError("a remote backend needs both the server's public key and this client's key pair")
    server_text, server_where = _key_source(server_key)
    server_public = (server_text.encode("ascii") if _Z85_KEY.match(server_text)
                     else _cert_field(server_text, "public-key", server_where))
    client_text, client_where = _key_source(client_keys)
    return CurveKeys(server_public, _cert_field(client_text, "public-key", client_where),
                     _cert_field(client_text, "secret-key", client_where))


ReplyHandler = Callable[[p.Message], None]


class Connection:
    """A client of one backend address. Not thread-safe: use it from one thread (Blender's main thread)."""

    def __init__(self, address: str, curve: CurveKeys | None = None, client_name: str = "carrara"):
        self.address = address
        self.curve = curve
        self.client_name = client_name
        self.state = ConnectionState.CLOSED
        self.problem = ""                       # why we are not connected, in words for the panel
        self.welcome: dict[str, Any] = {}       # the WELCOME body: versions, capabilities, job kinds, limits
        self.generation = 0                     # +1 per open(): transfers restart when it changes
        self._context = zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._last_ping = 0.0
        self._unanswered_since: float | None = None   # when we first asked after the last message arrived
        self._followed: set[str] = set()        # jobs to stay attached to, across reconnects
        self._handlers: dict[str, ReplyHandler] = {}
        self._inbox: deque[p.Message] = deque()
        self._hello_sent = False

    # --- lifecycle ------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect (or reconnect, dropping anything unsent) and say hello."""
        self._drop_socket()
        socket = self._context.socket(zmq.DEALER)
        socket.linger = 0
        if self.curve:
            socket.curve_serverkey = self.curve.server_public
            socket.curve_publickey = self.curve.client_public
            socket.curve_secretkey = self.curve.client_secret
        socket.connect(self.address)
        self._socket = socket
        self.generation += 1
        self.state = ConnectionState.CONNECTING
        self.problem = f"waiting for the backend at {self.address}"
        self._last_ping = self._unanswered_since = time.monotonic()
        self._hello_sent = self._send_quietly(p.MessageType.HELLO, {"client": self.client_name})

    def close(self) -> None:
        self._drop_socket()
        self.state = ConnectionState.CLOSED
        self.problem = "closed"

    def _drop_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        self._handlers.clear()

    def _lose(self, state: str, problem: str) -> None:
        self._drop_socket()
        self.state, self.problem = state, problem

    @property
    def connected(self) -> bool:
        return self.state == ConnectionState.CONNECTED

    @property
    def capabilities(self) -> dict[str, Any]:
        return self.welcome.get("capabilities") or {}

    @property
    def job_gpus(self) -> int | None:
        """How many GPUs one job may train on at this backend (its job devices that are GPUs); None before the
        welcome says."""
        if not self.welcome:
            return None
        return sum(str(device).startswith("cuda:") for device in self.capabilities.get("job_devices") or ())

    @property
    def followed_jobs(self) -> frozenset[str]:
        return frozenset(self._followed)

    # --- requests -------------------------------------------------------------------------------------------
    def request(self, mtype: str, body: dict[str, Any] | None = None, job_id: str | None = None,
                arrays: dict[str, np.ndarray] | None = None, on_reply: ReplyHandler | None = None) -> str:
        """Send a request; returns its id. With ``on_reply`` the reply goes there instead of out of ``poll``."""
        if self._socket is None or self.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
            raise NotConnectedError(f"not connected to the backend ({self.problem or self.state})")
        request_id = self._send(mtype, body or {}, job_id, arrays or {})
        if on_reply is not None:
            self._handlers[request_id] = on_reply
        return request_id

    def _send(self, mtype: str, body: dict[str, Any], job_id: str | None = None,
              arrays: dict[str, np.ndarray] | None = None) -> str:
        message = p.Message(mtype, body, request_id=p.new_request_id(), job_id=job_id, arrays=arrays or {})
        try:
            self._socket.send_multipart(p.encode(message), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise NotConnectedError(f"the backend at {self.address} is not reading its messages") from None
        return message.request_id

    def _send_quietly(self, mtype: str, body: dict[str, Any], job_id: str | None = None) -> bool:
        """Send what the connection itself needs (hello, ping, re-attach); False if the link is not up yet (e.g. a
        refused CURVE handshake being retried), in which case the heartbeat decides."""
        try:
            self._send(mtype, body, job_id)
        except NotConnectedError:
            return False
        return True

    def submit(self, kind: str, config: dict[str, Any]) -> str:
        """Submit a job; its JOB reply names the job, which this connection then follows."""
        return self.request(p.MessageType.SUBMIT, {"kind": kind, "config": config})

    def cancel(self, job_id: str) -> str:
        return self.request(p.MessageType.CANCEL, job_id=job_id)

    def resume(self, job_id: str) -> str:
        self._followed.add(job_id)
        return self.request(p.MessageType.RESUME, job_id=job_id)

    def list_jobs(self) -> str:
        return self.request(p.MessageType.LIST_JOBS)

    def attach(self, job_id: str) -> str | None:
        """Follow a job: its JOB snapshot now, its events from then on, again after every reconnect."""
        self._followed.add(job_id)
        return self._request_if_connected(p.MessageType.ATTACH, job_id)   # else sent when the welcome arrives

    def detach(self, job_id: str) -> str | None:
        self._followed.discard(job_id)
        return self._request_if_connected(p.MessageType.DETACH, job_id)

    def _request_if_connected(self, mtype: str, job_id: str) -> str | None:
        """Following is a wish kept across reconnects: a request that cannot go now is made again later."""
        if self.state != ConnectionState.CONNECTED:
            return None
        try:
            return self.request(mtype, job_id=job_id)
        except NotConnectedError:
            return None

    def fetch(self, job_id: str, name: str, offset: int, length: int, on_reply: ReplyHandler) -> str:
        return self.request(p.MessageType.FETCH, {"name": name, "offset": offset, "length": length},
                            job_id=job_id, on_reply=on_reply)

    # --- receiving ------------------------------------------------------------------------------------------
    def poll(self, budget_s: float = 0.003) -> list[p.Message]:
        """Do at most ``budget_s`` of receiving plus the heartbeat; return events and unclaimed replies."""
        out = list(self._inbox)
        self._inbox.clear()
        if self._socket is None:
            return out
        deadline = time.monotonic() + budget_s
        while self._socket is not None:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._unanswered_since = None
            try:
                message = p.decode(frames)
            except p.ProtocolError as exc:
                if exc.code == p.ErrorCode.BAD_VERSION:
                    self._lose(ConnectionState.INCOMPATIBLE, f"the backend at {self.address} is incompatible: "
                                                             f"{exc.message}")
                    break
                self.problem = f"ignored a message the backend garbled: {exc.message}"
                continue
            claimed = self._dispatch(message)
            if claimed is not None:
                out.append(claimed)
            if time.monotonic() >= deadline:
                break
        self._heartbeat()
        return out

    def _dispatch(self, message: p.Message) -> p.Message | None:
        handler = self._handlers.pop(message.request_id, None) if message.request_id else None
        if handler is not None:
            handler(message)
            return None
        if message.type == p.MessageType.WELCOME:
            self.welcome = dict(message.body)
            self.state, self.problem = ConnectionState.CONNECTED, ""
            for job_id in sorted(self._followed):
                self._send_quietly(p.MessageType.ATTACH, {}, job_id)
        elif message.type == p.MessageType.PONG:
            attached = set(message.body.get("attached") or ())
            if self.state == ConnectionState.CONNECTED:
                for job_id in sorted(self._followed - attached):   # the server forgot us (we were silent)
                    self._send_quietly(p.MessageType.ATTACH, {}, job_id)
            return None
        elif message.type == p.MessageType.JOB and message.job_id:
            self._followed.add(message.job_id)    # jobs this client submitted, resumed or attached to
        elif message.type == p.MessageType.ERROR and message.body.get("code") == p.ErrorCode.BAD_VERSION:
            self._lose(ConnectionState.INCOMPATIBLE, f"the backend refused this add-on: {message.body.get('message')}")
        elif message.type == p.MessageType.ERROR and message.body.get("code") == p.ErrorCode.NO_SUCH_JOB:
            self._followed.discard(message.job_id)
        return message

    def _heartbeat(self) -> None:
        """Ping every HEARTBEAT_INTERVAL_S; the backend is gone once a question stays unanswered for
        HEARTBEAT_TIMEOUT_S. Counting from our own question, not from the last answer, means a Blender that was
        busy (and did not poll) does not mistake its own silence for the backend's."""
        if self.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
            return
        now = time.monotonic()
        if self._unanswered_since is not None and now - self._unanswered_since > p.HEARTBEAT_TIMEOUT_S:
            self._lose(ConnectionState.LOST, f"no answer from the backend at {self.address} for "
                                             f"{now - self._unanswered_since:.0f} s: it is not running, not "
                                             "reachable, or it refused this add-on's key")
        elif now - self._last_ping >= p.HEARTBEAT_INTERVAL_S:
            self._last_ping = now
            if self._unanswered_since is None:
                self._unanswered_since = now
            if not self._hello_sent:
                self._hello_sent = self._send_quietly(p.MessageType.HELLO, {"client": self.client_name})
            self._send_quietly(p.MessageType.PING, {})

    # --- blocking helpers for scripts and tests (never used by the pump) -------------------------------------
    def wait_connected(self, timeout_s: float) -> None:
        """Poll until the welcome arrives; NotConnectedError with the reason if it does not."""
        deadline = time.monotonic() + timeout_s
        while self.state == ConnectionState.CONNECTING and time.monotonic() < deadline:
            self._inbox.extend(self.poll(0.01))
            self._wait(deadline)
        if self.state != ConnectionState.CONNECTED:
            raise NotConnectedError(self.problem or f"no welcome from {self.address} within {timeout_s} s")

    def wait_reply(self, request_id: str, timeout_s: float) -> p.Message:
        """Poll until the reply to ``request_id`` arrives; other messages stay queued for the next ``poll``."""
        deadline = time.monotonic() + timeout_s
        kept: list[p.Message] = []
        try:
            while time.monotonic() < deadline:
                for message in self.poll(0.01):
                    if message.request_id == request_id and message.type != p.MessageType.EVENT:
                        return message
                    kept.append(message)
                if self.state not in (ConnectionState.CONNECTING, ConnectionState.CONNECTED):
                    raise NotConnectedError(self.problem)
                self._wait(deadline)
            raise TimeoutError(f"no reply to request {request_id} within {timeout_s} s")
        finally:
            self._inbox.extendleft(reversed(kept))

    def call(self, mtype: str, body: dict[str, Any] | None = None, job_id: str | None = None,
             arrays: dict[str, np.ndarray] | None = None, timeout_s: float = 10.0) -> p.Message:
        """Request and wait for the reply; an ERROR reply raises RemoteError."""
        reply = self.wait_reply(self.request(mtype, body, job_id, arrays), timeout_s)
        if reply.type == p.MessageType.ERROR:
            raise RemoteError.from_reply(reply)
        return reply

    def wait(self, timeout_s: float) -> None:
        """Sleep until a message arrives or ``timeout_s`` passes: a loop of ``poll`` calls in a script that does
        not spin the CPU the backend on the same machine needs (a spinning benchmark slowed its backend 3x).
        Keep it short (the heartbeat goes out from ``poll``)."""
        if self._socket is not None:
            self._socket.poll(max(1, int(timeout_s * 1000)))

    def _wait(self, deadline: float) -> None:
        if self._socket is not None:
            self._socket.poll(max(1, min(50, int((deadline - time.monotonic()) * 1000))))
