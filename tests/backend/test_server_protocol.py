"""The job server over real loopback sockets: every request type round-trips, and every bad input gets an ERROR
reply naming the problem while the server goes on serving other clients."""
import json
import os

import numpy as np
import pytest
import zmq

from carrara.backend.jobs.kinds import registered_kinds
from carrara.shared import protocol as p
from testkit import ServerThread, write_colmap_dataset

TIMEOUT_MS = 15000


@pytest.fixture
def server(tmp_path):
    with ServerThread(tmp_path / "workspace") as running:
        yield running


def _dealer(address: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = TIMEOUT_MS
    sock.sndtimeo = TIMEOUT_MS
    sock.connect(address)
    return sock


@pytest.fixture
def client(server):
    sock = _dealer(server.address)
    yield sock
    sock.close()


def _exchange(sock: zmq.Socket, frames) -> p.Message:
    sock.send_multipart(frames)
    return p.decode(sock.recv_multipart())


def _request(sock: zmq.Socket, mtype: str, body=None, job_id=None, arrays=None) -> p.Message:
    message = p.Message(mtype, body or {}, request_id=p.new_request_id(), job_id=job_id, arrays=arrays or {})
    reply = _exchange(sock, p.encode(message))
    assert reply.request_id == message.request_id
    return reply


def _header(**fields) -> bytes:
    header = {"protocol": p.PROTOCOL_VERSION, "type": "ping", "request_id": "bad-1", "job_id": None, "body": {},
              "arrays": []}
    header.update(fields)
    return json.dumps(header).encode()


def _assert_still_serving(server) -> None:
    other = _dealer(server.address)
    try:
        assert _request(other, p.MessageType.PING).type == p.MessageType.PONG
    finally:
        other.close()


def _events_until_done(sock: zmq.Socket, job_id: str) -> list[dict]:
    events = []
    while not events or events[-1].get("state") not in ("finished", "failed", "cancelled"):
        message = p.decode(sock.recv_multipart())
        if message.type == p.MessageType.EVENT and message.job_id == job_id:
            events.append(message.body)
    return events


def test_hello_reports_versions_capabilities_and_kinds(client):
    welcome = _request(client, p.MessageType.HELLO, {"client": "test"})
    assert welcome.type == p.MessageType.WELCOME
    body = welcome.body
    assert body["protocol"] == p.PROTOCOL_VERSION and body["server_version"]
    caps = body["capabilities"]
    for key in ("gpu_name", "gpu_memory_bytes", "torch", "cuda", "tinycudann", "device", "cuda_available"):
        assert key in caps
    import torch
    assert caps["torch"] == torch.__version__
    assert caps["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert "check_dataset" in body["job_kinds"]
    assert body["limits"]["chunk_bytes"] == p.CHUNK_BYTES


def test_ping_list_submit_attach_detach_round_trip(client, tmp_path):
    assert _request(client, p.MessageType.PING).body == {"attached": []}
    assert _request(client, p.MessageType.LIST_JOBS).body == {"jobs": [], "total": 0}
    (tmp_path / "nothing").mkdir()          # a folder the backend sees, holding no dataset
    reply = _request(client, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                    "config": {"dataset": {"path": str(tmp_path / "nothing")}}})
    assert reply.type == p.MessageType.JOB
    job_id = reply.job_id
    assert reply.body["job"]["job_id"] == job_id and reply.body["job"]["state"] == "queued"
    events = _events_until_done(client, job_id)          # the submitter is attached to its job
    assert events[0] == {"event": "state", "state": "running", "reason": "started"}
    assert events[-1]["state"] == "failed"
    assert any(e["event"] == "error" and "nothing" in e["message"] for e in events)
    snapshot = _request(client, p.MessageType.ATTACH, job_id=job_id).body["job"]
    assert snapshot["state"] == "failed" and "nothing" in snapshot["error"]["message"]
    assert _request(client, p.MessageType.PING).body == {"attached": [job_id]}
    assert _request(client, p.MessageType.DETACH, job_id=job_id).type == p.MessageType.ACK
    assert _request(client, p.MessageType.PING).body == {"attached": []}
    listing = _request(client, p.MessageType.LIST_JOBS).body
    assert listing["total"] == 1 and listing["jobs"][0]["job_id"] == job_id and "config" not in listing["jobs"][0]


BAD_FRAMES = [
    ("not json", [b"\xff\xfe not json"], p.ErrorCode.MALFORMED, "not a UTF-8 JSON header"),
    ("empty frame", [b""], p.ErrorCode.MALFORMED, "JSON"),
    ("not an object", [b"[1, 2]"], p.ErrorCode.MALFORMED, "JSON object"),
    ("no type", [json.dumps({"protocol": p.PROTOCOL_VERSION, "request_id": "bad-1"}).encode()],
     p.ErrorCode.MALFORMED, "'type'"),
    ("no protocol", [json.dumps({"type": "ping", "request_id": "bad-1"}).encode()], p.ErrorCode.MALFORMED,
     "'protocol'"),
    ("unknown type", [_header(type="dance")], p.ErrorCode.UNKNOWN_TYPE, "'dance'"),
    ("reply as request", [_header(type="welcome")], p.ErrorCode.UNKNOWN_TYPE, "not a request"),
    ("wrong version", [_header(protocol=p.PROTOCOL_VERSION + 98)], p.ErrorCode.BAD_VERSION,
     f"protocol version {p.PROTOCOL_VERSION + 98}"),
    ("array length", [_header(arrays=[{"name": "a", "dtype": "<f4", "shape": [3]}]), b"\0" * 11],
     p.ErrorCode.BAD_ARRAY, "11 bytes received, dtype <f4 x shape [3] needs 12"),
    ("missing array frame", [_header(arrays=[{"name": "a", "dtype": "<f4", "shape": [3]}])], p.ErrorCode.BAD_ARRAY,
     "declares 1 arrays but 0"),
    ("pickle dtype", [_header(arrays=[{"name": "a", "dtype": "|O", "shape": [1]}]), b"\0" * 8],
     p.ErrorCode.BAD_ARRAY, "dtype '|O'"),
    ("oversized header", [_header(body={"pad": "x" * p.MAX_HEADER_BYTES})], p.ErrorCode.OVERSIZED, "header is"),
    ("oversized frame", [_header(arrays=[{"name": "a", "dtype": "|u1", "shape": [p.MAX_FRAME_BYTES + 1]}]),
                         b"\0" * (p.MAX_FRAME_BYTES + 1)], p.ErrorCode.OVERSIZED, "over 16777216"),
]


@pytest.mark.parametrize("frames, code, words", [case[1:] for case in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES])
def test_bad_frames_get_a_named_error_and_the_server_keeps_serving(server, client, frames, code, words):
    reply = _exchange(client, frames)
    assert reply.type == p.MessageType.ERROR
    assert reply.body["code"] == code
    assert words in reply.body["message"]
    _assert_still_serving(server)
    assert _request(client, p.MessageType.PING).type == p.MessageType.PONG    # and the offender too


def test_error_reply_names_the_request_it_answers(client):
    reply = _exchange(client, [_header(type="dance", request_id="mine-7")])
    assert reply.request_id == "mine-7"


BAD_REQUESTS = [
    ("unknown job", p.MessageType.ATTACH, {}, "no-such-job", p.ErrorCode.NO_SUCH_JOB, "no job 'no-such-job'"),
    ("job id not a job id", p.MessageType.CANCEL, {}, "../../etc", p.ErrorCode.NO_SUCH_JOB, "no job"),
    ("no job id", p.MessageType.RESUME, {}, None, p.ErrorCode.BAD_FIELD, "'job_id' is missing"),
    ("submit without kind", p.MessageType.SUBMIT, {"config": {}}, None, p.ErrorCode.BAD_FIELD, "'kind' is missing"),
    ("unknown kind", p.MessageType.SUBMIT, {"kind": "bake", "config": {}}, None, p.ErrorCode.BAD_FIELD,
     "job kind 'bake'"),
    ("unknown config field", p.MessageType.SUBMIT,
     {"kind": "check_dataset", "config": {"dataset": {"path": "/d"}, "speed": 11}}, None, p.ErrorCode.BAD_FIELD,
     "'speed' is not a check_dataset setting"),
    ("bad config value", p.MessageType.SUBMIT,
     {"kind": "reconstruct", "config": {"dataset": {"path": "/d"}, "sphere_radius": -1}}, None,
     p.ErrorCode.BAD_FIELD, "'sphere_radius'"),
    ("dataset both ways", p.MessageType.SUBMIT,
     {"kind": "check_dataset", "config": {"dataset": {"path": "/d", "upload_id": "u1"}}}, None,
     p.ErrorCode.BAD_FIELD, "exactly one of 'path' and 'upload_id'"),
    ("uncommitted upload", p.MessageType.SUBMIT,
     {"kind": "check_dataset", "config": {"dataset": {"upload_id": "u" + "0" * 32}}}, None, p.ErrorCode.BAD_FIELD,
     "not a committed upload"),
    ("upload path with ..", p.MessageType.UPLOAD_BEGIN, {"files": [["images/../../x.jpg", 1, "a" * 64]]}, None,
     p.ErrorCode.BAD_FIELD, "'..'"),
    ("absolute upload path", p.MessageType.UPLOAD_BEGIN, {"files": [["/etc/passwd", 1, "a" * 64]]}, None,
     p.ErrorCode.BAD_FIELD, "is absolute"),
    ("drive letter upload path", p.MessageType.UPLOAD_BEGIN, {"files": [["C:/x.jpg", 1, "a" * 64]]}, None,
     p.ErrorCode.BAD_FIELD, "is absolute"),
    ("backslash upload path", p.MessageType.UPLOAD_BEGIN, {"files": [["images\\x.jpg", 1, "a" * 64]]}, None,
     p.ErrorCode.BAD_FIELD, "backslash"),
    ("bad sha", p.MessageType.UPLOAD_BEGIN, {"files": [["x.jpg", 1, "XYZ"]]}, None, p.ErrorCode.BAD_FIELD,
     "64 lowercase hex"),
    ("file and folder", p.MessageType.UPLOAD_BEGIN, {"files": [["a", 1, "a" * 64], ["a/b", 1, "b" * 64]]}, None,
     p.ErrorCode.BAD_FIELD, "'a' is listed as a file and used as a folder"),
    ("unannounced chunk", p.MessageType.UPLOAD_CHUNK, {"sha256": "c" * 64, "offset": 0}, None,
     p.ErrorCode.BAD_FIELD, "was not announced"),
    ("unknown upload", p.MessageType.UPLOAD_COMMIT, {"upload_id": "u" + "f" * 32}, None, p.ErrorCode.BAD_FIELD,
     "is unknown"),
]


@pytest.mark.parametrize("mtype, body, job_id, code, words", [c[1:] for c in BAD_REQUESTS],
                         ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_a_named_error(server, client, mtype, body, job_id, code, words):
    reply = _request(client, mtype, body, job_id)
    assert reply.type == p.MessageType.ERROR, reply.body
    assert reply.body["code"] == code
    assert words in reply.body["message"]
    _assert_still_serving(server)


def test_a_folder_the_backend_cannot_see_asks_for_an_upload(client, tmp_path):
    reply = _request(client, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                    "config": {"dataset": {"path": str(tmp_path / "elsewhere")}}})
    assert reply.body["code"] == p.ErrorCode.NEEDS_UPLOAD
    assert "elsewhere" in reply.body["message"] and "upload" in reply.body["message"]
    assert _request(client, p.MessageType.LIST_JOBS).body["total"] == 0


def test_an_uploads_only_backend_refuses_its_own_folders(tmp_path):
    dataset = write_colmap_dataset(tmp_path / "dataset", 2)
    with ServerThread(tmp_path / "workspace", uploads_only=True) as running:
        client = _dealer(running.address)
        try:
            reply = _request(client, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                            "config": {"dataset": {"path": str(dataset)}}})
        finally:
            client.close()
    assert reply.body["code"] == p.ErrorCode.NEEDS_UPLOAD and "uploads-only" in reply.body["message"]


def test_extract_needs_a_reconstruction_to_extract_from(client, tmp_path):
    reply = _request(client, p.MessageType.SUBMIT, {"kind": "extract", "config": {"source_job_id": "j-none"}})
    assert reply.body["code"] == p.ErrorCode.NO_SUCH_JOB and "j-none" in reply.body["message"]
    (tmp_path / "d").mkdir()
    check = _request(client, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                    "config": {"dataset": {"path": str(tmp_path / "d")}}})
    reply = _request(client, p.MessageType.SUBMIT, {"kind": "extract", "config": {"source_job_id": check.job_id}})
    assert reply.body["code"] == p.ErrorCode.BAD_FIELD and "not a reconstruction" in reply.body["message"]


def test_a_kind_the_server_cannot_run_is_unavailable(client, monkeypatch):
    from carrara.backend.jobs import kinds
    monkeypatch.delitem(kinds._KINDS, "reconstruct")         # as a backend built without the engine would be
    assert "reconstruct" not in registered_kinds()
    reply = _request(client, p.MessageType.SUBMIT, {"kind": "reconstruct", "config": {"dataset": {"path": "/d"}}})
    assert reply.body["code"] == p.ErrorCode.UNAVAILABLE
    assert "not available on this backend" in reply.body["message"]


def test_fetch_refuses_names_outside_the_artifacts_folder(server, client, tmp_path):
    dataset = write_colmap_dataset(tmp_path / "dataset", 2)
    job_id = _request(client, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                     "config": {"dataset": {"path": str(dataset)}}}).job_id
    _events_until_done(client, job_id)
    artifacts = server.server.workspace.artifacts_dir(job_id)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")
    os.symlink(secret, artifacts / "innocent.txt")
    cases = [("../job.json", p.ErrorCode.BAD_FIELD, "'..'"), ("/etc/passwd", p.ErrorCode.BAD_FIELD, "absolute"),
             ("innocent.txt", p.ErrorCode.BAD_FIELD, "leads outside its folder"),
             ("nothing.npz", p.ErrorCode.NO_SUCH_ARTIFACT, "has no artifact 'nothing.npz'")]
    for name, code, words in cases:
        reply = _request(client, p.MessageType.FETCH, {"name": name, "offset": 0, "length": 16}, job_id)
        assert (reply.body["code"], words in reply.body["message"]) == (code, True), (name, reply.body)
    report = "dataset_report.json"
    reply = _request(client, p.MessageType.FETCH, {"name": report, "offset": 0, "length": p.CHUNK_BYTES + 1}, job_id)
    assert reply.body["code"] == p.ErrorCode.BAD_FIELD and "'length'" in reply.body["message"]
    size = (artifacts / report).stat().st_size
    reply = _request(client, p.MessageType.FETCH, {"name": report, "offset": size + 1, "length": 8}, job_id)
    assert reply.body["code"] == p.ErrorCode.BAD_FIELD and "lies outside" in reply.body["message"]
    reply = _request(client, p.MessageType.FETCH, {"name": report, "offset": 3, "length": 10}, job_id)
    assert reply.type == p.MessageType.CHUNK and reply.body["size"] == size
    assert reply.arrays["data"].tobytes() == (artifacts / report).read_bytes()[3:13]


def test_uploaded_chunk_must_be_bytes(client):
    sha = "d" * 64
    assert _request(client, p.MessageType.UPLOAD_BEGIN, {"files": [["x.bin", 8, sha]]}).type == "upload_status"
    reply = _request(client, p.MessageType.UPLOAD_CHUNK, {"sha256": sha, "offset": 0},
                     arrays={"data": np.zeros(2, np.float32)})
    assert reply.body["code"] == p.ErrorCode.BAD_ARRAY and "uint8" in reply.body["message"]
