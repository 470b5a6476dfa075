"""Generated malformed messages against a real backend process on loopback: over 10,000 of them, in batches, the
server answering every one and a ping after each batch, never with ``internal``, its memory bounded; and a path
that tries to escape through every field that names a file.

Bounded in count and time (a fixed seed, well under a minute on 2 cores)."""
import json
import random
import time

import numpy as np
import pytest
import zmq

from carrara.shared import protocol as p
from testkit import ServerThread, free_tcp_port, start_backend, stop_process

MESSAGES = 10_240
BATCH = 512
SEED = 15

ESCAPES = ["../job.json", "../../../../etc/passwd", "/etc/passwd", "C:/Windows/win.ini", "a/../../b", "..",
           "./x", "a//b", "a\\..\\b", "x\0y", "a/" * 600 + "x", ""]


def _value(rng: random.Random, depth: int = 0):
    """A JSON value of any type, sometimes hostile: huge or negative numbers, long or escaping strings, nesting."""
    pick = rng.randrange(13)
    if pick == 0:
        return rng.choice([0, -1, 1, 2 ** 31, 2 ** 63, 2 ** 64, -(2 ** 64), 10 ** 30])
    if pick == 1:
        return rng.choice([0.5, -1e308, 1e308, 3.0])
    if pick == 2:
        return rng.choice([True, False, None])
    if pick == 3:
        return rng.choice(ESCAPES)
    if pick == 4:
        return "x" * rng.choice([1, 100, 5000])
    if pick == 5:
        return rng.choice(["<f4", "|u1", "|O", "<c16", "u1", ">f8", "V8"])
    if pick == 6 and depth < 4:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 7 and depth < 4:
        return {rng.choice(["path", "upload_id", "name", "files", "offset", "length", "kind", "config", "sha256",
                            "dataset", "x"]): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if pick == 8:
        return [[rng.choice(ESCAPES + ["a.jpg"]), rng.choice([1, -1, 2 ** 64, 0]), rng.choice(["a" * 64, "zz"])]]
    if pick == 9:
        return "u" + "".join(rng.choice("0123456789abcdef") for _ in range(32))
    if pick == 10:
        return {"dataset": {"path": rng.choice(ESCAPES), "upload_id": None}}
    return rng.choice(["", "check_dataset", "reconstruct", "extract", "a" * 64, "20261205-000000-abcdef"])


def _body(rng: random.Random, mtype: str) -> dict:
    fields = {"submit": ["kind", "config"], "fetch": ["name", "offset", "length"], "fetch_log": ["offset", "length"],
              "upload_begin": ["files"], "upload_chunk": ["sha256", "offset"], "upload_commit": ["upload_id"],
              "prune": ["older_than_days"], "hello": ["client"]}.get(mtype, ["x"])
    return {name: _value(rng) for name in fields if rng.random() < 0.8}


def _array_spec(rng: random.Random) -> tuple[dict, bytes]:
    dtype = rng.choice(["|u1", "<f4", "<i8", "|O", ["<f4"], {"a": 1}, None, 7, "<u4"])
    shape = rng.choice([[3], [0], [2, 2], [2 ** 64], [2 ** 32, 2 ** 32], [-1], [1.5], "3", [1] * 40, [True],
                        [4, 2 ** 62], None])
    length = rng.choice([0, 1, 3, 12, 16, 64])
    spec = {"name": rng.choice(["data", "files", "", 5, None]), "dtype": dtype, "shape": shape}
    return spec, bytes(length)


def malformed(rng: random.Random) -> list[bytes]:
    """One generated message that is wrong in at least one way, or right but with hostile values."""
    mtype = rng.choice(sorted(p.MessageType.REQUESTS - {p.MessageType.HELLO}) + ["welcome", "dance", 7, None])
    header = {"protocol": p.PROTOCOL_VERSION, "type": mtype, "request_id": f"fz-{rng.randrange(10 ** 9)}",
              "job_id": rng.choice([None, None, "20261205-000000-abcdef", *ESCAPES[:4], 5]),
              "body": _body(rng, mtype if isinstance(mtype, str) else ""), "arrays": []}
    frames: list[bytes] = []
    kind = rng.randrange(10)
    if kind == 0:
        header[rng.choice(list(header))] = _value(rng)
    elif kind == 1:
        del header[rng.choice(list(header))]
    elif kind in (2, 3):
        for _ in range(rng.randrange(1, 4)):
            spec, frame = _array_spec(rng)
            header["arrays"].append(spec)
            frames.append(frame)
        if rng.random() < 0.3:
            frames.append(b"extra")
    elif kind == 4:
        raw = bytearray(json.dumps(header).encode())
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return [bytes(raw)]
    elif kind == 5:
        depth = rng.choice([40, 1000, 50_000])
        return [b'{"protocol": 1, "type": "ping", "request_id": "fz-deep", "body": {"x": ' + b"[" * depth +
                b"]" * depth + b"}}"]
    elif kind == 6:
        return [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))]
    text = json.dumps(header).encode()
    return [text, *frames]


def _dealer(address: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 30_000
    sock.sndhwm = sock.rcvhwm = 4 * BATCH
    sock.connect(address)
    return sock


def _memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as status:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status
                if line.startswith(("VmRSS:", "VmHWM:"))}


def test_ten_thousand_malformed_messages(tmp_path, capsys):
    rng = random.Random(SEED)
    workspace, port = tmp_path / "workspace", free_tcp_port()
    backend = start_backend(workspace, port, "--uploads-only")
    codes: dict[str, int] = {}
    try:
        sock = _dealer(f"tcp://127.0.0.1:{port}")
        sock.send_multipart(p.encode(p.Message(p.MessageType.HELLO, request_id="hello")))
        assert p.decode(sock.recv_multipart()).type == p.MessageType.WELCOME
        before = _memory(backend.pid)
        started, sent = time.monotonic(), 0
        while sent < MESSAGES:
            for _ in range(BATCH):
                sock.send_multipart(malformed(rng))
            for _ in range(BATCH):
                reply = p.decode(sock.recv_multipart())
                code = reply.body.get("code", reply.type) if reply.type == p.MessageType.ERROR else reply.type
                codes[code] = codes.get(code, 0) + 1
            sent += BATCH
            sock.send_multipart(p.encode(p.Message(p.MessageType.PING, request_id=f"alive-{sent}")))
            pong = p.decode(sock.recv_multipart())
            assert (pong.type, pong.request_id) == (p.MessageType.PONG, f"alive-{sent}")
        seconds = time.monotonic() - started
        after = _memory(backend.pid)
        sock.close()
        assert backend.poll() is None, "the server stopped"
    finally:
        assert stop_process(backend) == 0
    with capsys.disabled():
        print(f"\nfuzz: {sent} messages in {seconds:.1f} s, replies {dict(sorted(codes.items()))}, "
              f"RSS {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20} MiB, peak {before['VmHWM'] >> 20} -> "
              f"{after['VmHWM'] >> 20} MiB")
    assert sum(codes.values()) == sent
    assert codes.get(p.ErrorCode.INTERNAL, 0) == 0
    assert after["VmRSS"] - before["VmRSS"] < 64 << 20
    internal_log = (tmp_path / "workspace.log").read_text()
    assert "internal error" not in internal_log


# --- every field that names a file or a folder ---------------------------------------------------------------

@pytest.fixture(scope="module")
def uploads_only(tmp_path_factory):
    """An --uploads-only server holding one finished job, so an escaping name has a folder to start from."""
    from carrara.backend.server.workspace import Workspace
    root = tmp_path_factory.mktemp("escape")
    workspace = Workspace(root / "workspace")
    record = workspace.create_job("check_dataset", {"dataset": {"path": "/", "upload_id": None}})
    record.set_state("finished", "test")
    workspace.save(record)
    with ServerThread(workspace.root, uploads_only=True) as server:
        sock = _dealer(server.address)
        yield record.job_id, sock
        sock.close()


def _ask(sock, mtype, body=None, job_id=None, arrays=None) -> p.Message:
    message = p.Message(mtype, body or {}, request_id=p.new_request_id(), job_id=job_id, arrays=arrays or {})
    sock.send_multipart(p.encode(message))
    reply = p.decode(sock.recv_multipart())
    assert reply.request_id == message.request_id
    return reply


FIELDS = {
    "fetch name": lambda esc: (p.MessageType.FETCH, {"name": esc, "offset": 0, "length": 8}, "J"),
    "job id (attach)": lambda esc: (p.MessageType.ATTACH, {}, esc),
    "job id (fetch_log)": lambda esc: (p.MessageType.FETCH_LOG, {"offset": 0, "length": 8}, esc),
    "job id (delete)": lambda esc: (p.MessageType.DELETE_JOB, {}, esc),
    "upload path": lambda esc: (p.MessageType.UPLOAD_BEGIN, {"files": [[esc, 1, "a" * 64]]}, None),
    "upload path (array)": lambda esc: (p.MessageType.UPLOAD_BEGIN, {}, None,
                                        {"files": np.frombuffer(json.dumps([[esc, 1, "a" * 64]]).encode(), np.uint8)}),
    "upload id (commit)": lambda esc: (p.MessageType.UPLOAD_COMMIT, {"upload_id": esc}, None),
    "upload id (config)": lambda esc: (p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                              "config": {"dataset": {"upload_id": esc}}}, None),
    "dataset path": lambda esc: (p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                        "config": {"dataset": {"path": esc}}}, None),
    "source job id": lambda esc: (p.MessageType.SUBMIT, {"kind": "extract", "config": {"source_job_id": esc}},
                                  None),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_no_field_that_names_a_file_leads_out(uploads_only, field):
    existing, sock = uploads_only
    jobs = _ask(sock, p.MessageType.LIST_JOBS).body["jobs"]
    for escape in ESCAPES:
        mtype, body, job, *arrays = FIELDS[field](escape)
        job = existing if job == "J" else job
        reply = _ask(sock, mtype, body, job, arrays[0] if arrays else None)
        assert reply.type == p.MessageType.ERROR, (field, escape, reply.body)
        assert reply.body["code"] in (p.ErrorCode.BAD_FIELD, p.ErrorCode.NO_SUCH_JOB, p.ErrorCode.NEEDS_UPLOAD,
                                      p.ErrorCode.NO_SUCH_ARTIFACT), (field, escape, reply.body)
    assert _ask(sock, p.MessageType.LIST_JOBS).body["jobs"] == jobs      # nothing created, nothing removed
