"""The server hardened against what probing it as an attacker or an unlucky user found (issue 15): each test here
rebuilds one finding on loopback and failed before its fix."""
import hashlib
import importlib.util
import json
import os
import stat
import time

import numpy as np
import pytest
import zmq
import zmq.auth

from carrara.addon.client.connection import Connection, CurveKeys
from carrara.backend.server.security import is_loopback, make_keys
from carrara.backend.server.workspace import Workspace
from carrara.shared import protocol as p
from testkit import ServerThread, free_tcp_port, start_backend, stop_process, write_colmap_dataset

TIMEOUT_MS = 15000


def _dealer(address: str, curve: CurveKeys | None = None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = TIMEOUT_MS
    sock.sndtimeo = TIMEOUT_MS
    if curve is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve.server_public, curve.client_public, \
            curve.client_secret
    sock.connect(address)
    return sock


def _request(sock: zmq.Socket, mtype: str, body=None, job_id=None, arrays=None) -> p.Message:
    message = p.Message(mtype, body or {}, request_id=p.new_request_id(), job_id=job_id, arrays=arrays or {})
    sock.send_multipart(p.encode(message))
    while True:
        reply = p.decode(sock.recv_multipart())
        if reply.request_id == message.request_id:
            return reply


def _raw(sock: zmq.Socket, frames) -> p.Message:
    sock.send_multipart(frames)
    return p.decode(sock.recv_multipart())


def _header(**fields) -> bytes:
    header = {"protocol": p.PROTOCOL_VERSION, "type": "ping", "request_id": "probe-1", "job_id": None, "body": {},
              "arrays": []}
    header.update(fields)
    return json.dumps(header).encode()


def _wait_state(sock: zmq.Socket, job_id: str, states=("finished", "failed", "cancelled"), timeout_s=60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = _request(sock, p.MessageType.ATTACH, job_id=job_id).body["job"]
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states}")


@pytest.fixture
def server(tmp_path):
    with ServerThread(tmp_path / "workspace") as running:
        yield running


@pytest.fixture
def client(server):
    sock = _dealer(server.address)
    yield sock
    sock.close()


# --- a crash: one over-long line in images.txt ----------------------------------------------------------------

def _text_model_with_a_long_image_name(root, chars: int = 300_000):
    (root / "sparse").mkdir(parents=True)
    (root / "sparse" / "cameras.txt").write_text("1 PINHOLE 64 48 64 64 32 24\n")
    (root / "sparse" / "images.txt").write_text("1 1 0 0 0 0 0 4 1 " + "x" * chars + "\n\n")
    (root / "sparse" / "points3D.txt").write_text("")
    return root


def test_an_over_long_line_in_images_txt_fails_the_job_and_the_server_lives(tmp_path):
    dataset = _text_model_with_a_long_image_name(tmp_path / "dataset")
    with ServerThread(tmp_path / "workspace") as server:
        sock = _dealer(server.address)
        job_id = _request(sock, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                       "config": {"dataset": {"path": str(dataset)}}}).job_id
        job = _wait_state(sock, job_id)
        assert job["state"] in ("failed", "finished")
        assert _request(sock, p.MessageType.LIST_JOBS).body["total"] == 1
        assert server.status is None          # the loop still runs
        log = (server.server.workspace.job_dir(job_id) / "log.txt").read_text()
        assert max(len(line) for line in log.splitlines()) < 20_000
        sock.close()


# --- lasting failures: list_jobs and big uploads ------------------------------------------------------------

def _failed_jobs(workspace_root, count: int, message_chars: int, traceback_chars: int) -> list[str]:
    workspace = Workspace(workspace_root)
    ids = []
    for _ in range(count):
        record = workspace.create_job("check_dataset", {"dataset": {"path": "/d", "upload_id": None}})
        record.error = {"message": "m" * message_chars, "traceback": "t" * traceback_chars}
        record.set_state("failed", "failed")
        workspace.save(record)
        ids.append(record.job_id)
    return ids


@pytest.mark.parametrize("count, message_chars, traceback_chars", [(150, 200, 4000), (1, 400_000, 10)],
                         ids=["many failed jobs", "one huge error"])
def test_list_jobs_answers_after_many_failed_jobs_or_one_huge_error(tmp_path, count, message_chars,
                                                                   traceback_chars):
    ids = _failed_jobs(tmp_path / "workspace", count, message_chars, traceback_chars)
    with ServerThread(tmp_path / "workspace") as server:
        sock = _dealer(server.address)
        listing = _request(sock, p.MessageType.LIST_JOBS)
        assert listing.type == p.MessageType.JOBS, listing.body
        assert listing.body["total"] == count and listing.body["jobs"]
        job = _request(sock, p.MessageType.ATTACH, job_id=ids[-1])
        assert job.type == p.MessageType.JOB, job.body
        assert job.body["job"]["error"]["message"].startswith("mmm")
        sock.close()


def _sha(index: int) -> str:
    return hashlib.sha256(str(index).encode()).hexdigest()


def test_an_upload_of_thousands_of_photos_begins(client):
    files = [[f"images/photo_with_a_long_descriptive_name_{i:05d}.jpg", 100 + i, _sha(i)] for i in range(6000)]
    listing = np.frombuffer(json.dumps(files).encode(), np.uint8)
    reply = _request(client, p.MessageType.UPLOAD_BEGIN, {}, arrays={"files": listing})
    assert reply.type == p.MessageType.UPLOAD_STATUS, reply.body
    assert reply.body["files"] == 6000 and reply.body["missing_total"] == 6000
    assert 0 < len(reply.body["missing"]) <= 6000


def test_three_thousand_short_names_get_a_reply_that_fits(client):
    files = [[f"{i}", 1, _sha(i)] for i in range(3000)]
    reply = _request(client, p.MessageType.UPLOAD_BEGIN, {"files": files})
    assert reply.type == p.MessageType.UPLOAD_STATUS, reply.body
    assert reply.body["missing_total"] == 3000


# --- internal errors: every malformed message gets its own code and keeps its request id ---------------------

def _array_header(**spec) -> bytes:
    return _header(arrays=[{"name": "a", "dtype": "|u1", "shape": [1], **spec}])


MALFORMED = [
    ("shape of 2^64", [_array_header(shape=[2 ** 64]), b"\0"], p.ErrorCode.OVERSIZED),
    ("shape wrapping to 0 in int64", [_array_header(dtype="<u4", shape=[2 ** 32, 2 ** 30]), b""],
     p.ErrorCode.OVERSIZED),
    ("many dimensions", [_array_header(shape=[1] * 1000), b"\0"], p.ErrorCode.BAD_ARRAY),
    ("list as dtype", [_array_header(dtype=["<f4"]), b"\0"], p.ErrorCode.BAD_ARRAY),
    ("dict as dtype", [_array_header(dtype={"a": 1}), b"\0"], p.ErrorCode.BAD_ARRAY),
    ("JSON nested 1000 deep", [b'{"protocol": 1, "type": "ping", "request_id": "probe-1", "body": {"x": ' +
                               b"[" * 1000 + b"]" * 1000 + b"}}"], p.ErrorCode.MALFORMED),
    ("JSON nested 100,000 deep", [b'{"protocol": 1, "type": "ping", "request_id": "probe-1", "body": ' + b"[" * 100_000 +
                                  b"]" * 100_000 + b"}"], p.ErrorCode.MALFORMED),
]


@pytest.mark.parametrize("frames, code", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_arrays_and_deep_json_are_not_internal_errors(server, client, frames, code):
    reply = _raw(client, frames)
    assert reply.type == p.MessageType.ERROR
    assert reply.body["code"] == code, reply.body
    assert reply.request_id == "probe-1"
    assert _request(client, p.MessageType.PING).type == p.MessageType.PONG


def test_an_internal_error_replies_with_an_id_and_keeps_the_traceback_in_the_log(server, client, capfd):
    def broken(identity, request):
        raise ZeroDivisionError("a secret server detail")
    server.server._handlers[p.MessageType.LIST_JOBS] = broken
    reply = _request(client, p.MessageType.LIST_JOBS)
    assert reply.body["code"] == p.ErrorCode.INTERNAL
    assert "traceback" not in reply.body and "secret" not in reply.body["message"]
    error_id = reply.body["error_id"]
    assert error_id in reply.body["message"]
    err = capfd.readouterr().err
    assert error_id in err and "Traceback" in err and "a secret server detail" in err


def test_a_crashing_job_sends_an_error_id_not_a_traceback(tmp_path, capfd, monkeypatch):
    from carrara.backend.jobs import kinds

    def crash(config, job_dir, reporter, device):
        return 1 / 0
    monkeypatch.setitem(kinds._KINDS, "check_dataset", lambda: crash)
    (tmp_path / "d").mkdir()
    with ServerThread(tmp_path / "workspace") as server:
        sock = _dealer(server.address)
        job_id = _request(sock, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                       "config": {"dataset": {"path": str(tmp_path / "d")}}}).job_id
        job = _wait_state(sock, job_id)
        sock.close()
    assert job["state"] == "failed" and job["error"]["traceback"] == ""
    error_id = job["error"]["error_id"]
    assert error_id in job["error"]["message"] and "ZeroDivisionError" in job["error"]["message"]
    err = capfd.readouterr().err
    assert error_id in err and "Traceback" in err


# --- unbounded resources -------------------------------------------------------------------------------------

def test_a_one_tebibyte_blob_is_refused_with_a_quota_error(client):
    reply = _request(client, p.MessageType.UPLOAD_BEGIN, {"files": [["huge.bin", 1 << 40, "a" * 64]]})
    assert reply.body["code"] == p.ErrorCode.QUOTA and "huge.bin" in reply.body["message"]


def test_queued_jobs_are_bounded_by_a_quota(tmp_path):
    from carrara.backend.server.quotas import Quotas
    (tmp_path / "d").mkdir()
    with ServerThread(tmp_path / "workspace") as server:
        server.server.jobs.quotas = Quotas(queued_jobs=3)
        sock = _dealer(server.address)
        body = {"kind": "check_dataset", "config": {"dataset": {"path": str(tmp_path / "d")}}}
        replies = [_request(sock, p.MessageType.SUBMIT, body) for _ in range(8)]
        codes = [r.body.get("code") for r in replies]
        assert p.ErrorCode.QUOTA in codes
        refused = next(r for r in replies if r.body.get("code") == p.ErrorCode.QUOTA)
        assert "queued" in refused.body["message"]
        sock.close()


def test_announced_blob_bookkeeping_is_bounded(client, server):
    from carrara.backend.server import uploads
    for start in range(0, 3 * uploads.ANNOUNCED_BLOBS_KEPT, 2000):
        files = [[f"f{i}", 1, _sha(i)] for i in range(start, start + 2000)]
        _request(client, p.MessageType.UPLOAD_BEGIN, {"files": files})
    assert len(server.server.uploads._sizes) <= uploads.ANNOUNCED_BLOBS_KEPT


def _memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status
                if line.startswith(("VmRSS:", "VmHWM:"))}


def test_a_message_of_many_frames_is_refused_without_holding_them(tmp_path):
    workspace, port = tmp_path / "workspace", free_tcp_port()
    backend = start_backend(workspace, port)
    try:
        sock = _dealer(f"tcp://127.0.0.1:{port}")
        sock.rcvtimeo = 60_000
        assert _request(sock, p.MessageType.HELLO).type == p.MessageType.WELCOME     # the probe (torch) is done
        before = _memory(backend.pid)
        frame = b"\0" * (8 << 20)
        for _ in range(3):
            reply = _raw(sock, [_header(), *([frame] * 24)])      # 192 MiB in 25 frames, each under the limit
            assert reply.body["code"] == p.ErrorCode.OVERSIZED and reply.request_id == "probe-1"
        after = _memory(backend.pid)
        # the transport holds one whole message (192 MiB); copying it again would pass 384
        assert after["VmHWM"] - before["VmHWM"] < 300 << 20, (before, after)
        assert _request(sock, p.MessageType.PING).type == p.MessageType.PONG
        sock.close()
    finally:
        assert stop_process(backend) == 0


# --- isolation, keys, addresses --------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["tcp://127.evil.example:5555", "tcp://127.0.0.1.evil.example:1",
                                      "tcp://localhost.evil.example:1", "tcp://eth0;127.0.0.1:5555"])
def test_the_loopback_check_parses_the_address(endpoint):
    assert is_loopback(endpoint) is False


def test_keys_are_private_from_the_start(tmp_path):
    old = os.umask(0)
    try:
        make_keys(tmp_path / "keys")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for name in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    assert zmq.auth.load_certificate(tmp_path / "keys" / "server.key_secret")[1]


def _curve(keys, tmp_path, name: str | None) -> CurveKeys:
    server_public = zmq.auth.load_certificate(keys / "server.key")[0]
    if name is None:
        public, secret = zmq.auth.load_certificate(keys / "client.key_secret")
    else:
        public, secret = zmq.auth.load_certificate(zmq.auth.create_certificates(tmp_path, name)[1])
    return CurveKeys(server_public, public, secret)


def _answers(sock: zmq.Socket, timeout_ms: int = 1500) -> bool:
    sock.send_multipart(p.encode(p.Message(p.MessageType.PING, request_id="k")))
    return bool(sock.poll(timeout_ms))


def test_authorised_keys_are_reloaded_without_a_restart(tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys)
    newcomer = _curve(keys, tmp_path, "newcomer")
    with ServerThread(tmp_path / "workspace", keys_dir=keys) as server:
        sock = _dealer(server.address, newcomer)
        assert not _answers(sock)
        sock.close()
        (keys / "authorized_clients" / "newcomer.key").write_bytes((tmp_path / "newcomer.key").read_bytes())
        deadline = time.monotonic() + 10
        while True:
            sock = _dealer(server.address, newcomer)
            admitted = _answers(sock)
            sock.close()
            if admitted or time.monotonic() > deadline:
                break
        assert admitted


def test_clients_see_only_their_own_jobs(tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys)
    other = _curve(keys, tmp_path, "other")
    (keys / "authorized_clients" / "other.key").write_bytes((tmp_path / "other.key").read_bytes())
    (tmp_path / "d").mkdir()
    with ServerThread(tmp_path / "workspace", keys_dir=keys) as server:
        mine, theirs = _dealer(server.address, _curve(keys, tmp_path, None)), _dealer(server.address, other)
        job_id = _request(mine, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                       "config": {"dataset": {"path": str(tmp_path / "d")}}}).job_id
        _wait_state(mine, job_id)
        assert _request(theirs, p.MessageType.LIST_JOBS).body == {"jobs": [], "total": 0}
        for mtype, body in [(p.MessageType.ATTACH, {}), (p.MessageType.CANCEL, {}), (p.MessageType.RESUME, {}),
                            (p.MessageType.DETACH, {}), (p.MessageType.FETCH_LOG, {"offset": 0, "length": 8}),
                            (p.MessageType.FETCH, {"name": "dataset_report.json", "offset": 0, "length": 8}),
                            (p.MessageType.DELETE_JOB, {})]:
            reply = _request(theirs, mtype, body, job_id)
            assert reply.body.get("code") == p.ErrorCode.NO_SUCH_JOB, (mtype, reply.body)
        assert _request(theirs, p.MessageType.PRUNE, {"older_than_days": 0}).body["jobs"] == []
        assert _request(mine, p.MessageType.LIST_JOBS).body["total"] == 1
        assert _request(mine, p.MessageType.FETCH_LOG, {"offset": 0, "length": 64}, job_id).type == p.MessageType.CHUNK
        mine.close()
        theirs.close()


# --- checkpoints -----------------------------------------------------------------------------------------------

def test_stale_checkpoint_temp_files_are_removed_on_start(tmp_path):
    workspace = Workspace(tmp_path / "workspace")
    record = workspace.create_job("check_dataset", {"dataset": {"path": str(tmp_path), "upload_id": None}})
    record.set_state("finished", "test")
    workspace.save(record)
    checkpoints = workspace.job_dir(record.job_id) / "checkpoints"
    stale = [checkpoints / ".ckpt_00000100.pt.4242.tmp", checkpoints / ".check_dataset.json.4242.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    kept = checkpoints / "ckpt_00000050.pt"
    kept.write_bytes(b"a checkpoint")
    with ServerThread(workspace.root):
        pass
    assert not any(path.exists() for path in stale) and kept.exists()


# --- an escape: image names and file_path in an upload must stay inside the upload ---------------------------
# These rely on shared/dataset_source.py (the dataset owner's one reader, which confines every photo path it
# yields); the server's part is that under --uploads-only a job reads nothing but its upload folder. They are
# skipped, not passed, until that module is in the tree.
needs_dataset_source = pytest.mark.skipif(
    importlib.util.find_spec("carrara.shared.dataset_source") is None,
    reason="waits for shared/dataset_source.py (the dataset owner's one reader and path confinement)")

def _png(path, size=(64, 48)):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)
    return path


def _upload_folder(connection, folder) -> str:
    from carrara.addon.client.transfers import DatasetUpload, TransferState
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    upload = DatasetUpload(files)
    deadline = time.monotonic() + 30
    while upload.state == TransferState.RUNNING:
        assert time.monotonic() < deadline
        upload.step(connection)
        connection.poll(0.01)
    assert upload.state == TransferState.DONE, upload.error
    return upload.upload_id


def _escaping_colmap(root, secret) -> None:
    _png(root / "images" / "img_001.png")
    (root / "sparse").mkdir(parents=True)
    (root / "sparse" / "cameras.txt").write_text("1 PINHOLE 64 48 64 64 32 24\n")
    (root / "sparse" / "images.txt").write_text(
        "1 1 0 0 0 0 0 4 1 img_001.png\n\n"
        "2 1 0 0 0 0.5 0 4 1 " + "../" * 30 + str(secret).lstrip("/") + "\n\n"
        "3 1 0 0 0 -0.5 0 4 1 " + str(secret) + "\n\n")
    (root / "sparse" / "points3D.txt").write_text("1 0 0 0 200 100 50 0\n")


def _escaping_transforms(root, secret) -> None:
    _png(root / "images" / "a.png")
    _png(root / "images" / "b.png")
    pose = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]
    frames = [{"file_path": "images/a.png", "transform_matrix": pose},
              {"file_path": "images/b.png", "transform_matrix": pose},
              {"file_path": "../" * 30 + str(secret).lstrip("/"), "transform_matrix": pose},
              {"file_path": str(secret), "transform_matrix": pose}]
    (root / "transforms.json").write_text(json.dumps({"fl_x": 64, "fl_y": 64, "cx": 32, "cy": 24, "w": 64, "h": 48,
                                                      "frames": frames}))


@needs_dataset_source
@pytest.mark.parametrize("write, field", [(_escaping_colmap, "name"), (_escaping_transforms, "file_path")],
                         ids=["COLMAP image names", "transforms.json file_path"])
@pytest.mark.parametrize("kind", ["check_dataset", "reconstruct"])
def test_an_uploaded_dataset_cannot_name_files_outside_the_upload(tmp_path, write, field, kind):
    secret = _png(tmp_path / "outside" / "secret.png", size=(32, 24))
    write(tmp_path / "dataset", secret)
    with ServerThread(tmp_path / "workspace", uploads_only=True) as server:
        connection = Connection(server.address)
        connection.open()
        connection.wait_connected(30)
        upload_id = _upload_folder(connection, tmp_path / "dataset")
        config = {"dataset": {"upload_id": upload_id}}
        if kind == "reconstruct":
            config.update({"preset": "ci", "iterations": 5, "device": "cpu", "preview_every_s": 0.0,
                           "mesh_resolution": 32, "texture": False, "export_formats": ["ply"]})
        job_id = connection.call(p.MessageType.SUBMIT, {"kind": kind, "config": config}).job_id
        sock = _dealer(server.address)
        job = _wait_state(sock, job_id, timeout_s=120)
        sock.close()
        log_file = server.server.workspace.job_dir(job_id) / "log.txt"
        log = log_file.read_text() if log_file.exists() else ""
        connection.close()
    assert job["state"] == "failed", job
    message = job["error"]["message"]
    assert field in message and "outside" in message, message
    assert job["error"]["traceback"] == "" and "error_id" not in job["error"]
    assert "32x24" not in log and "32x24" not in message      # nothing read from the file outside


def _corrupt(root, case: str):
    """A two-photo COLMAP text model broken in one way (the corpus both the check and training must refuse)."""
    _png(root / "images" / "a.png")
    _png(root / "images" / "b.png", size=(32, 24) if case == "resized photo" else (64, 48))
    if case == "missing photo":
        (root / "images" / "b.png").unlink()
    camera = {"focal length 0": "PINHOLE 64 48 0 0 32 24", "focal length -500": "PINHOLE 64 48 -500 -500 32 24",
              "lens distortion": "OPENCV 64 48 64 64 32 24 0.2 0 0 0"}.get(case, "PINHOLE 64 48 64 64 32 24")
    second = {"NaN pose": "2 1 0 0 0 nan 0 4 1 b.png", "name leads out": "2 1 0 0 0 0.5 0 4 1 ../../outside.png",
              "one photo": ""}.get(case, "2 1 0 0 0 0.5 0 4 1 b.png")
    (root / "sparse").mkdir(parents=True)
    (root / "sparse" / "cameras.txt").write_text(f"1 {camera}\n")
    (root / "sparse" / "images.txt").write_text(f"1 1 0 0 0 0 0 4 1 a.png\n\n{second}\n\n" if second else
                                                "1 1 0 0 0 0 0 4 1 a.png\n\n")
    (root / "sparse" / "points3D.txt").write_text("1 0 0 0 200 100 50 0\n")
    if case == "name leads out":
        _png(root.parent / "outside.png")
    return root


CORRUPT = {"focal length 0": "focal length", "focal length -500": "focal length", "lens distortion": "distortion",
           "NaN pose": "NaN", "missing photo": "missing", "resized photo": "32x24", "name leads out": "outside",
           "one photo": "photo"}


@needs_dataset_source
def test_the_corrupt_dataset_corpus_gets_one_verdict_from_the_check_and_from_training(tmp_path):
    """Each broken dataset fails the check and training alike, with the same words and no error id (an explained
    failure, not a bug): shared/dataset_source.py is the one judge."""
    verdicts = {}
    with ServerThread(tmp_path / "workspace") as server:
        sock = _dealer(server.address)
        for index, case in enumerate(CORRUPT):
            root = _corrupt(tmp_path / f"d{index}" / "dataset", case)
            for kind in ("check_dataset", "reconstruct"):
                config = {"dataset": {"path": str(root)}}
                if kind == "reconstruct":
                    config.update({"preset": "ci", "iterations": 5, "device": "cpu", "preview_every_s": 0.0,
                                   "mesh_resolution": 32, "texture": False, "export_formats": ["ply"]})
                job_id = _request(sock, p.MessageType.SUBMIT, {"kind": kind, "config": config}).job_id
                job = _wait_state(sock, job_id, timeout_s=120)
                assert job["state"] == "failed", (case, kind, job)
                assert "error_id" not in job["error"], (case, kind, job["error"])
                verdicts[case, kind] = job["error"]["message"]
        sock.close()
    for case, words in CORRUPT.items():
        check, training = verdicts[case, "check_dataset"], verdicts[case, "reconstruct"]
        assert words in check and words in training, (case, check, training)
        assert _first_problem(check) == _first_problem(training), (case, check, training)


def _first_problem(message: str) -> str:
    return message.split("the first: ", 1)[-1]


def test_an_allow_list_confines_the_folders_clients_may_name(tmp_path):
    (tmp_path / "allowed" / "d").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "allowed" / "link").symlink_to(tmp_path / "elsewhere")
    with ServerThread(tmp_path / "workspace") as server:
        server.server.jobs.allowed_roots = [(tmp_path / "allowed").resolve()]
        sock = _dealer(server.address)
        for outside in (tmp_path / "elsewhere", tmp_path / "allowed" / "link", tmp_path / "allowed" / ".." / "elsewhere"):
            reply = _request(sock, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                          "config": {"dataset": {"path": str(outside)}}})
            assert reply.body.get("code") == p.ErrorCode.NEEDS_UPLOAD, reply.body
            assert "'dataset.path'" in reply.body["message"] and "--allow-root" in reply.body["message"]
        inside = _request(sock, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                       "config": {"dataset": {"path": str(tmp_path / "allowed" / "d")}}})
        assert inside.type == p.MessageType.JOB
        sock.close()


def test_an_allow_list_confines_the_photos_a_dataset_inside_it_points_to(tmp_path):
    """The dataset's folder is allowed, but its photos folder is a link leading out: the job reads nothing there."""
    write_colmap_dataset(tmp_path / "elsewhere", 3)
    dataset = tmp_path / "allowed" / "d"
    (dataset / "sparse").mkdir(parents=True)
    (dataset / "sparse" / "0").symlink_to(tmp_path / "elsewhere" / "sparse" / "0")
    (dataset / "images").symlink_to(tmp_path / "elsewhere" / "images")
    with ServerThread(tmp_path / "workspace") as server:
        server.server.jobs.allowed_roots = [(tmp_path / "allowed").resolve()]
        sock = _dealer(server.address)
        job_id = _request(sock, p.MessageType.SUBMIT, {"kind": "check_dataset",
                                                       "config": {"dataset": {"path": str(dataset)}}}).job_id
        job = _wait_state(sock, job_id)
        sock.close()
    assert job["state"] == "failed", job
    assert "img_001.png" in job["error"]["message"] and "outside where the photos may be" in job["error"]["message"]


# --- retention and quotas ------------------------------------------------------------------------------------------

def _age(path, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def test_old_jobs_and_unused_uploads_are_pruned_at_start(tmp_path):
    from carrara.backend.server.uploads import UploadStore
    workspace = Workspace(tmp_path / "workspace")
    old, recent, queued = (workspace.create_job("check_dataset", {"dataset": {"path": "/d", "upload_id": None}})
                           for _ in range(3))
    for record, state in ((old, "finished"), (recent, "failed")):
        record.set_state(state, "test")
        workspace.save(record)
    for record in (old, queued):
        _age(workspace.job_dir(record.job_id) / "job.json", 40)
    store = UploadStore(workspace.uploads_dir)
    data = b"a photo"
    sha = hashlib.sha256(data).hexdigest()
    upload_id = store.begin([["photo.jpg", len(data), sha]])["upload_id"]
    store.chunk(sha, 0, np.frombuffer(data, np.uint8))
    store.commit(upload_id)
    _age(store.manifests / f"{upload_id}.json", 40)
    with ServerThread(workspace.root) as server:
        sock = _dealer(server.address)
        ids = {job["job_id"] for job in _request(sock, p.MessageType.LIST_JOBS).body["jobs"]}
        sock.close()
    assert ids == {recent.job_id, queued.job_id}
    assert not workspace.job_dir(old.job_id).exists()
    assert not (store.datasets / upload_id).exists() and not (store.blobs / sha).exists()


def test_the_upload_store_quota(tmp_path):
    from carrara.backend.server.quotas import Quotas
    with ServerThread(tmp_path / "workspace") as server:
        server.server.uploads.quotas = Quotas(store_bytes=1000)
        sock = _dealer(server.address)
        fits = _request(sock, p.MessageType.UPLOAD_BEGIN, {"files": [["a.jpg", 600, "a" * 64]]})
        assert fits.type == p.MessageType.UPLOAD_STATUS
        _request(sock, p.MessageType.UPLOAD_CHUNK, {"sha256": "a" * 64, "offset": 0},
                 arrays={"data": np.zeros(600, np.uint8)})      # held as a partial blob (its hash is wrong later)
        over = _request(sock, p.MessageType.UPLOAD_BEGIN, {"files": [["b.jpg", 600, "b" * 64]]})
        assert over.body.get("code") == p.ErrorCode.QUOTA and "prune" in over.body["message"]
        sock.close()
