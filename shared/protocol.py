"""The one wire format between the Blender add-on and the backend.

A message is a ZeroMQ multipart message. Frame 0 is a UTF-8 JSON header; every further frame is the raw,
little-endian bytes of one array that the header's ``arrays`` list declares (name, dtype, shape), in order.
Nothing is ever pickled. Large payloads (meshes, uploads) never travel in one message: they are files that
the receiver pulls or the sender pushes in bounded chunks (``fetch``/``chunk``, ``upload_chunk``), so
neither side holds more than a chunk in flight and a dropped connection resumes from an offset.

This module is imported by both sides: standard library and numpy only, no zmq, no bpy, no torch.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Sequence, Union

import numpy as np

PROTOCOL_VERSION = 1

#: Header size limit: a header is metadata, never payload.
MAX_HEADER_BYTES = 256 * 1024
#: Largest single array frame; bulk data is chunked below this.
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Size of the chunks in which files and meshes travel.
CHUNK_BYTES = 4 * 1024 * 1024
MAX_ARRAYS = 16
#: Dimensions of one array, and nesting depth of the JSON header: both far above any real message.
MAX_ARRAY_DIMS = 8
MAX_JSON_DEPTH = 32
#: Frames and bytes of one whole message; the server discards the rest of a message past these unread.
MAX_MESSAGE_FRAMES = 1 + MAX_ARRAYS
MAX_MESSAGE_BYTES = 2 * MAX_FRAME_BYTES
#: Texts that travel inside other messages (log lines, error messages) are clipped to these many characters.
MAX_LOG_LINE_CHARS = 4000
MAX_ERROR_MESSAGE_CHARS = 2000

#: Seconds between the client's pings; either side treats 3 missed beats as the other being gone.
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TIMEOUT_S = 3.5

#: dtypes that may travel; all are little-endian or single-byte.
ALLOWED_DTYPES = frozenset({"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"})


class MessageType:
    """Every message type, client requests first, then server replies and events."""

    # client -> server
    HELLO = "hello"
    PING = "ping"
    SUBMIT = "submit"
    CANCEL = "cancel"
    RESUME = "resume"
    LIST_JOBS = "list_jobs"
    ATTACH = "attach"
    DETACH = "detach"
    FETCH = "fetch"
    UPLOAD_BEGIN = "upload_begin"
    UPLOAD_CHUNK = "upload_chunk"
    UPLOAD_COMMIT = "upload_commit"
    DELETE_JOB = "delete_job"
    FETCH_LOG = "fetch_log"
    PRUNE = "prune"
    # server -> client
    WELCOME = "welcome"
    PONG = "pong"
    JOB = "job"
    JOBS = "jobs"
    ACK = "ack"
    CHUNK = "chunk"
    UPLOAD_STATUS = "upload_status"
    PRUNED = "pruned"
    EVENT = "event"
    ERROR = "error"

    REQUESTS = frozenset({HELLO, PING, SUBMIT, CANCEL, RESUME, LIST_JOBS, ATTACH, DETACH, FETCH,
                          UPLOAD_BEGIN, UPLOAD_CHUNK, UPLOAD_COMMIT, DELETE_JOB, FETCH_LOG, PRUNE})
    REPLIES = frozenset({WELCOME, PONG, JOB, JOBS, ACK, CHUNK, UPLOAD_STATUS, PRUNED, EVENT, ERROR})


class EventKind:
    """The ``body["event"]`` of an EVENT message about one job."""

    STATE = "state"            # body: state, reason
    PROGRESS = "progress"      # body: iteration, total, loss, psnr, rate (it/s), eta_s, phase
    LOG = "log"                # body: line, level
    PREVIEW_MESH = "preview_mesh"  # body: artifact (ArtifactRef dict)
    FINAL_MESH = "final_mesh"      # body: artifact (ArtifactRef dict)
    ARTIFACT = "artifact"      # body: artifact (ArtifactRef dict): any other finished file (report, PLY, glTF)
    ERROR = "error"            # body: message, traceback

    ALL = frozenset({STATE, PROGRESS, LOG, PREVIEW_MESH, FINAL_MESH, ARTIFACT, ERROR})


class JobState:
    """Lifecycle of a job; terminal states keep their folder and checkpoints."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the server stopped while it ran; resumable

    ALL = frozenset({QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED})
    ACTIVE = frozenset({QUEUED, RUNNING})
    RESUMABLE = frozenset({FAILED, CANCELLED, INTERRUPTED})


class ErrorCode:
    """The ``body["code"]`` of an ERROR reply: what the requester did wrong, or what failed."""

    MALFORMED = "malformed"            # frames or header unusable
    BAD_VERSION = "bad_version"        # protocol version mismatch
    UNKNOWN_TYPE = "unknown_type"
    BAD_FIELD = "bad_field"            # a body field missing or of the wrong type or value
    BAD_ARRAY = "bad_array"            # array frame does not match its declaration
    OVERSIZED = "oversized"
    NO_SUCH_JOB = "no_such_job"
    NO_SUCH_ARTIFACT = "no_such_artifact"
    BAD_STATE = "bad_state"            # e.g. resuming a running job
    UNAVAILABLE = "unavailable"        # e.g. a GPU-only job on a CPU server
    NEEDS_UPLOAD = "needs_upload"      # the backend cannot (or may not) read the dataset path: upload it
    QUOTA = "quota"                    # a server limit on blobs, uploads or queued jobs: remove something first
    INTERNAL = "internal"              # a bug; the message carries an error id, the traceback stays in the log


class ProtocolError(Exception):
    """A message that cannot be accepted; ``code`` is an ErrorCode and the text names the field."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Message:
    """A decoded message: header fields plus named arrays (read-only views on the received frames)."""

    type: str
    body: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    job_id: str | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    protocol: int = PROTOCOL_VERSION


_request_counter = itertools.count(1)
_request_prefix = f"{os.getpid():x}"


def new_request_id() -> str:
    """A request id unique within this process, echoed by the reply that answers it."""
    return f"{_request_prefix}-{next(_request_counter)}"


def _wire_dtype(dtype: np.dtype) -> str:
    """The little-endian spelling of a dtype ('>f4' and '=f4' both travel as '<f4')."""
    return np.dtype(dtype).newbyteorder("<").str


def encode(message: Message) -> list[bytes | memoryview]:
    """Turn a Message into the frames to send; arrays become little-endian contiguous buffers."""
    if message.type not in MessageType.REQUESTS | MessageType.REPLIES:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {message.type!r}")
    declared: list[dict[str, Any]] = []
    frames: list[bytes | memoryview] = []
    for name, array in message.arrays.items():
        arr = np.asarray(array)
        wire = _wire_dtype(arr.dtype)
        if wire not in ALLOWED_DTYPES:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"array {name!r}: dtype {arr.dtype} cannot travel")
        arr = np.ascontiguousarray(arr, dtype=np.dtype(wire))
        if arr.nbytes > MAX_FRAME_BYTES:
            raise ProtocolError(ErrorCode.OVERSIZED,
                                f"array {name!r} is {arr.nbytes} bytes, over the {MAX_FRAME_BYTES}-byte frame limit; chunk it")
        declared.append({"name": name, "dtype": wire, "shape": list(arr.shape)})
        frames.append(memoryview(arr).cast("B") if arr.nbytes else b"")
    header = {
        "protocol": message.protocol,
        "type": message.type,
        "request_id": message.request_id,
        "job_id": message.job_id,
        "body": message.body,
        "arrays": declared,
    }
    encoded = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(encoded) > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.OVERSIZED, f"header is {len(encoded)} bytes, over {MAX_HEADER_BYTES}")
    if len(message.arrays) > MAX_ARRAYS:
        raise ProtocolError(ErrorCode.OVERSIZED, f"{len(message.arrays)} arrays, over {MAX_ARRAYS}")
    return [encoded, *frames]


_REQUEST_ID_TEXT = re.compile(rb'"request_id"\s*:\s*"([^"\\]{1,128})"')


def peek_request_id(frames: Sequence[bytes | memoryview]) -> str | None:
    """Best-effort request id of a message that failed to decode, so the error reply can name it (read as text
    when the header is not JSON this side accepts, e.g. nested too deep)."""
    try:
        raw = bytes(frames[0])[:MAX_HEADER_BYTES]
    except (IndexError, TypeError):
        return None
    try:
        header = json.loads(raw)
        rid = header.get("request_id") if isinstance(header, dict) else None
        return rid if isinstance(rid, str) else None
    except (ValueError, RecursionError):
        found = _REQUEST_ID_TEXT.search(raw)
        return found.group(1).decode("utf-8", "replace") if found else None


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut, so a message built from it stays small."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters cut)"


def new_error_id() -> str:
    """A short id that ties an ``internal`` reply to its traceback in the server's log."""
    return f"E{secrets.token_hex(4)}"


def _nesting_depth(value: Any) -> int:
    """Deepest list/object nesting of a decoded JSON value, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def decode(frames: Sequence[bytes | memoryview]) -> Message:
    """Check and decode received frames; every fault raises ProtocolError naming the field at fault."""
    if not frames:
        raise ProtocolError(ErrorCode.MALFORMED, "empty message: frame 0 must be a JSON header")
    raw = bytes(frames[0])
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.OVERSIZED, f"header is {len(raw)} bytes, over {MAX_HEADER_BYTES}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"frame 0 is not a UTF-8 JSON header: {exc}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.MALFORMED, f"frame 0 nests lists or objects deeper than {MAX_JSON_DEPTH}") \
            from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "frame 0 must be a JSON object")
    if _nesting_depth(header) > MAX_JSON_DEPTH:
        raise ProtocolError(ErrorCode.MALFORMED, f"frame 0 nests lists or objects deeper than {MAX_JSON_DEPTH}")
    version = header.get("protocol")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError(ErrorCode.MALFORMED, "header field 'protocol' is missing or not an integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION,
                            f"protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION}); "
                            "update the add-on and the backend to the same release")
    mtype = header.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError(ErrorCode.MALFORMED, "header field 'type' is missing or not a string")
    if mtype not in MessageType.REQUESTS | MessageType.REPLIES:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {mtype!r}")
    request_id = header.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(ErrorCode.MALFORMED, "header field 'request_id' must be a string or null")
    job_id = header.get("job_id")
    if job_id is not None and not isinstance(job_id, str):
        raise ProtocolError(ErrorCode.MALFORMED, "header field 'job_id' must be a string or null")
    body = header.get("body", {})
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.MALFORMED, "header field 'body' must be a JSON object")
    declared = header.get("arrays", [])
    if not isinstance(declared, list):
        raise ProtocolError(ErrorCode.MALFORMED, "header field 'arrays' must be a list")
    if len(declared) > MAX_ARRAYS:
        raise ProtocolError(ErrorCode.OVERSIZED, f"{len(declared)} arrays declared, over {MAX_ARRAYS}")
    if len(declared) != len(frames) - 1:
        raise ProtocolError(ErrorCode.BAD_ARRAY,
                            f"header declares {len(declared)} arrays but {len(frames) - 1} data frames came")
    arrays: dict[str, np.ndarray] = {}
    for index, (spec, frame) in enumerate(zip(declared, frames[1:])):
        arrays_name, array = _decode_array(index, spec, frame)
        if arrays_name in arrays:
            raise ProtocolError(ErrorCode.BAD_ARRAY, f"array name {arrays_name!r} declared twice")
        arrays[arrays_name] = array
    return Message(type=mtype, body=body, request_id=request_id, job_id=job_id, arrays=arrays, protocol=version)


def _decode_array(index: int, spec: Any, frame: bytes | memoryview) -> tuple[str, np.ndarray]:
    where = f"arrays[{index}]"
    if not isinstance(spec, dict):
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where} must be an object with name, dtype and shape")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or not name:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where}.name must be a non-empty string")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where} ({name}): dtype {clip_text(repr(dtype), 40)} is not "
                                                 f"one of {sorted(ALLOWED_DTYPES)}")
    if (not isinstance(shape, list) or len(shape) > MAX_ARRAY_DIMS or
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ProtocolError(ErrorCode.BAD_ARRAY, f"{where} ({name}): shape must be a list of at most "
                                                 f"{MAX_ARRAY_DIMS} non-negative integers")
    itemsize = np.dtype(dtype).itemsize
    expected = itemsize * math.prod(shape)      # Python integers: no wrap-around
    buffer = memoryview(frame) if not isinstance(frame, memoryview) else frame
    if expected > MAX_FRAME_BYTES or buffer.nbytes > MAX_FRAME_BYTES:
        raise ProtocolError(ErrorCode.OVERSIZED,
                            f"{where} ({name}) is {max(expected, buffer.nbytes)} bytes, over {MAX_FRAME_BYTES}")
    if buffer.nbytes != expected:
        raise ProtocolError(ErrorCode.BAD_ARRAY,
                            f"{where} ({name}): {buffer.nbytes} bytes received, dtype {dtype} x shape {shape} "
                            f"needs {expected}")
    array = np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape)
    return name, array


def reply_to(request: Message, mtype: str, body: dict[str, Any] | None = None,
             arrays: dict[str, np.ndarray] | None = None) -> Message:
    """A reply that echoes the request's id and job."""
    return Message(type=mtype, body=body or {}, request_id=request.request_id, job_id=request.job_id,
                   arrays=arrays or {})


def error_reply(code: str, message: str, request_id: str | None = None, job_id: str | None = None,
                error_id: str | None = None) -> Message:
    """An ERROR reply; ``error_id`` names an ``internal`` error's traceback in the server's log."""
    body: dict[str, Any] = {"code": code, "message": clip_text(message, MAX_ERROR_MESSAGE_CHARS)}
    if error_id:
        body["error_id"] = error_id
    return Message(type=MessageType.ERROR, body=body, request_id=request_id, job_id=job_id)


# --- body field checks, shared by the server's handlers and the client's reply handling -----------------

def require(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    """Return ``body[name]`` if it has the expected JSON type, else raise a BAD_FIELD error naming it."""
    if name not in body or body[name] is None:
        if optional:
            return None
        raise ProtocolError(ErrorCode.BAD_FIELD, f"body field {name!r} is missing")
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"body field {name!r} must be {_names(kinds)}, not a boolean")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds):
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"body field {name!r} must be {_names(kinds)}, not {type(value).__name__}")
    return value


def _names(kinds: Iterable[type]) -> str:
    words = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list", dict: "an object"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


@dataclass(frozen=True)
class ArtifactRef:
    """A file a job produced that a client may fetch in chunks; ``sha256`` lets it check the whole."""

    name: str            # path relative to the job's artifacts folder, e.g. "preview_000500.npz"
    size: int
    sha256: str
    kind: str            # "preview_mesh", "final_mesh", "texture", "ply", "glb", "log"
    iteration: int = 0
    stats: dict[str, Any] = field(default_factory=dict)  # e.g. vertex and face counts

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "kind": self.kind,
                "iteration": self.iteration, "stats": dict(self.stats)}

    @classmethod
    def from_json(cls, data: Any) -> "ArtifactRef":
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.BAD_FIELD, "artifact must be an object")
        return cls(name=require(data, "name", str), size=require(data, "size", int),
                   sha256=require(data, "sha256", str), kind=require(data, "kind", str),
                   iteration=require(data, "iteration", int, optional=True) or 0,
                   stats=require(data, "stats", dict, optional=True) or {})


# --- typed job events: the backend writes them and the add-on reads them through the same records ----------------

def _finite_or_none(value: Any) -> float | None:
    """JSON has no NaN: a diverged loss travels as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class StateEvent:
    """A job changed state; ``reason`` is the sentence an artist reads beside it."""

    KIND: ClassVar[str] = EventKind.STATE
    state: str
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StateEvent":
        state = require(data, "state", str)
        if state not in JobState.ALL:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"body field 'state' is {state!r}, not a job state")
        return cls(state=state, reason=require(data, "reason", str, optional=True) or "")


@dataclass(frozen=True)
class ProgressEvent:
    """Where a job stands; a number the backend does not know (or that diverged) is None."""

    KIND: ClassVar[str] = EventKind.PROGRESS
    iteration: int
    total: int
    loss: float | None = None
    psnr: float | None = None
    rate: float | None = None     # iterations per second
    eta_s: float | None = None
    phase: str = "train"
    fraction: float = 0.0

    @classmethod
    def at(cls, iteration: int, total: int, *, loss: float | None = None, psnr: float | None = None,
           rate: float | None = None, eta_s: float | None = None, phase: str = "train") -> "ProgressEvent":
        """The event for ``iteration`` of ``total``: non-finite numbers become None, the fraction is derived."""
        iteration, total = int(iteration), int(total)
        return cls(iteration=iteration, total=total, loss=_finite_or_none(loss), psnr=_finite_or_none(psnr),
                   rate=_finite_or_none(rate), eta_s=_finite_or_none(eta_s), phase=str(phase),
                   fraction=min(1.0, iteration / total) if total > 0 else 0.0)

    def to_json(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "total": self.total, "loss": self.loss, "psnr": self.psnr,
                "rate": self.rate, "eta_s": self.eta_s, "phase": self.phase, "fraction": self.fraction}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ProgressEvent":
        def number(name: str) -> float | None:
            return _finite_or_none(require(data, name, (int, float), optional=True))

        return cls(iteration=require(data, "iteration", int), total=require(data, "total", int),
                   loss=number("loss"), psnr=number("psnr"), rate=number("rate"), eta_s=number("eta_s"),
                   phase=require(data, "phase", str, optional=True) or "",
                   fraction=min(1.0, max(0.0, number("fraction") or 0.0)))


@dataclass(frozen=True)
class LogEvent:
    """One line of a job's log."""

    KIND: ClassVar[str] = EventKind.LOG
    LEVELS: ClassVar[tuple[str, ...]] = ("info", "warning", "error")
    line: str
    level: str = "info"

    @classmethod
    def of(cls, line: str, level: str = "info") -> "LogEvent":
        """The line clipped to fit an event (one line may quote a whole file), an unknown level as info."""
        return cls(line=clip_text(line, MAX_LOG_LINE_CHARS), level=level if level in cls.LEVELS else "info")

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "level": self.level}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LogEvent":
        level = require(data, "level", str, optional=True) or "info"
        return cls(line=require(data, "line", str), level=level if level in cls.LEVELS else "info")


@dataclass(frozen=True)
class ErrorEvent:
    """Why a job failed; ``traceback`` is empty for a failure the artist can fix (bad input, a full disk)."""

    KIND: ClassVar[str] = EventKind.ERROR
    message: str
    traceback: str = ""
    error_id: str = ""     # an internal error's id: its traceback is in the server's log under it

    def to_json(self) -> dict[str, Any]:
        body = {"message": clip_text(self.message, MAX_ERROR_MESSAGE_CHARS), "traceback": self.traceback}
        return {**body, "error_id": self.error_id} if self.error_id else body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ErrorEvent":
        return cls(message=require(data, "message", str),
                   traceback=require(data, "traceback", str, optional=True) or "",
                   error_id=require(data, "error_id", str, optional=True) or "")


@dataclass(frozen=True)
class ArtifactEvent:
    """A file a job finished: a preview or final mesh (``event`` says which) or any other result."""

    event: str          # EventKind.PREVIEW_MESH, FINAL_MESH or ARTIFACT
    artifact: ArtifactRef

    KINDS: ClassVar[frozenset[str]] = frozenset({EventKind.PREVIEW_MESH, EventKind.FINAL_MESH, EventKind.ARTIFACT})

    @property
    def artifact_kind(self) -> str:
        """What the file is: the mesh events name it, an ARTIFACT event carries it in its reference."""
        return self.artifact.kind if self.event == EventKind.ARTIFACT else self.event

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], event: str = EventKind.ARTIFACT) -> "ArtifactEvent":
        return cls(event=event, artifact=ArtifactRef.from_json(require(data, "artifact", dict)))


JobEvent = Union[StateEvent, ProgressEvent, LogEvent, ErrorEvent, ArtifactEvent]
_EVENT_TYPES: dict[str, Any] = {EventKind.STATE: StateEvent, EventKind.PROGRESS: ProgressEvent,
                                EventKind.LOG: LogEvent, EventKind.ERROR: ErrorEvent}


def job_event(job_id: str, record: JobEvent) -> Message:
    """The EVENT message that carries ``record`` about job ``job_id``."""
    kind = record.event if isinstance(record, ArtifactEvent) else record.KIND
    return Message(type=MessageType.EVENT, body={"event": kind, **record.to_json()}, job_id=job_id)


def read_event(body: dict[str, Any]) -> JobEvent:
    """The typed record in an EVENT body; a ProtocolError names the field that is missing or wrong."""
    kind = require(body, "event", str)
    if kind in ArtifactEvent.KINDS:
        return ArtifactEvent.from_json(body, kind)
    if kind not in _EVENT_TYPES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"body field 'event' is {kind!r}, not an event kind")
    return _EVENT_TYPES[kind].from_json(body)
