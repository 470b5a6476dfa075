"""The add-on's client (no bpy): states, heartbeats, reconnect with re-attach, keys, and artifact downloads that
resume and check SHA-256, all against the real server on loopback."""
import time

import numpy as np
import pytest
import zmq

from carrara.addon.client.connection import Connection, ConnectionState, NotConnectedError, load_curve_keys
from carrara.addon.client.transfers import ArtifactDownload, TransferState
from carrara.backend.server.security import make_keys
from carrara.shared import protocol as p
from carrara.shared.mesh_data import MeshData
from testkit import ServerThread, finished_job_with_mesh, free_tcp_port, sphere_mesh


def _poll_until(connection: Connection, condition, timeout_s: float) -> list[p.Message]:
    received = []
    deadline = time.monotonic() + timeout_s
    while not condition(received):
        assert time.monotonic() < deadline, f"timed out in state {connection.state}: {connection.problem}"
        received += connection.poll(0.01)
        time.sleep(0.01)
    return received


def _job_reply_for(job_id):
    return lambda received: any(m.type == p.MessageType.JOB and m.job_id == job_id for m in received)


def test_connects_and_knows_the_backend(tmp_path):
    with ServerThread(tmp_path / "workspace") as server:
        connection = Connection(server.address)
        assert connection.state == ConnectionState.CLOSED
        with pytest.raises(NotConnectedError, match="not connected"):
            connection.list_jobs()
        connection.open()
        assert connection.state == ConnectionState.CONNECTING
        connection.wait_connected(30)
        assert connection.connected and connection.problem == ""
        assert connection.welcome["protocol"] == p.PROTOCOL_VERSION
        assert "check_dataset" in connection.welcome["job_kinds"]
        assert connection.capabilities["device"] in ("cpu", "cuda")
        reply = connection.wait_reply(connection.list_jobs(), 10)
        assert reply.type == p.MessageType.JOBS
        connection.close()
        assert connection.state == ConnectionState.CLOSED


def test_a_stopped_server_is_noticed_and_a_restarted_one_reattached(tmp_path):
    job_id, _ = finished_job_with_mesh(tmp_path / "workspace", sphere_mesh(1), state="interrupted")
    port = free_tcp_port()
    server = ServerThread(tmp_path / "workspace", port)
    connection = Connection(server.address)
    try:
        connection.open()
        connection.wait_connected(30)
        connection.attach(job_id)
        _poll_until(connection, _job_reply_for(job_id), 10)
        server.stop()
        stopped = time.monotonic()
        _poll_until(connection, lambda _: connection.state == ConnectionState.LOST, p.HEARTBEAT_TIMEOUT_S + 3)
        assert time.monotonic() - stopped < p.HEARTBEAT_TIMEOUT_S + 2
        assert "no answer from the backend" in connection.problem
        with pytest.raises(NotConnectedError, match="no answer"):
            connection.list_jobs()

        server = ServerThread(tmp_path / "workspace", port)
        connection.open()
        received = _poll_until(connection, _job_reply_for(job_id), 30)   # re-attached without being asked
        assert connection.connected
        snapshot = next(m for m in received if m.type == p.MessageType.JOB).body["job"]
        assert snapshot["job_id"] == job_id
        assert [h["state"] for h in snapshot["history"]][-1] in ("queued", "running", "failed")
    finally:
        connection.close()
        server.stop()


def test_a_client_the_server_forgot_re_attaches_on_the_next_pong(tmp_path):
    job_id, _ = finished_job_with_mesh(tmp_path / "workspace", sphere_mesh(1))
    with ServerThread(tmp_path / "workspace") as server:
        connection = Connection(server.address)
        connection.open()
        connection.wait_connected(30)
        connection.attach(job_id)
        _poll_until(connection, _job_reply_for(job_id), 10)
        server.server._clients.clear()            # what the server does to a client silent for too long
        _poll_until(connection, _job_reply_for(job_id), p.HEARTBEAT_INTERVAL_S * 3)
        assert connection.followed_jobs == {job_id}
        connection.close()


def test_a_backend_speaking_another_protocol_is_incompatible(tmp_path):
    port = free_tcp_port()
    router = zmq.Context.instance().socket(zmq.ROUTER)     # a peer from another release: replies with protocol 99
    router.linger = 0
    router.bind(f"tcp://127.0.0.1:{port}")
    connection = Connection(f"tcp://127.0.0.1:{port}")
    try:
        connection.open()
        assert router.poll(5000)
        identity, *_ = router.recv_multipart()
        header = b'{"protocol": 99, "type": "welcome", "request_id": null, "job_id": null, "body": {}, "arrays": []}'
        router.send_multipart([identity, header])
        _poll_until(connection, lambda _: connection.state != ConnectionState.CONNECTING, 5)
        assert connection.state == ConnectionState.INCOMPATIBLE
        assert "protocol version 99 is not supported" in connection.problem
    finally:
        connection.close()
        router.close()


def test_curve_keys_come_from_files_or_text(tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys)
    from_files = load_curve_keys(str(keys / "server.key"), str(keys / "client.key_secret"))
    server_public = from_files.server_public.decode()
    from_text = load_curve_keys(server_public, (keys / "client.key_secret").read_text())
    assert from_text == from_files and len(from_files.client_secret) == 40
    assert load_curve_keys("", "") is None
    with pytest.raises(ValueError, match="needs both"):
        load_curve_keys(server_public, "")
    with pytest.raises(ValueError, match="holds no secret-key"):
        load_curve_keys(server_public, str(keys / "client.key"))


def _download(connection: Connection, download: ArtifactDownload, stop=lambda: False, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while download.state == TransferState.RUNNING and not stop():
        assert time.monotonic() < deadline, "download timed out"
        download.step(connection)
        connection.poll(0.01)


def test_artifact_download_resumes_and_checks_sha256(tmp_path):
    mesh = sphere_mesh(4)
    job_id, ref_json = finished_job_with_mesh(tmp_path / "workspace", mesh)
    ref = p.ArtifactRef.from_json(ref_json)
    assert ref.size > 40_000 and ref.stats == {"vertices": mesh.vertex_count, "faces": mesh.face_count,
                                               "vertex_colors": True, "textured": False}
    with ServerThread(tmp_path / "workspace") as server:
        connection = Connection(server.address)
        connection.open()
        connection.wait_connected(30)
        snapshot = connection.call(p.MessageType.ATTACH, job_id=job_id).body["job"]
        assert snapshot["artifacts"]["final_mesh"] == ref_json       # a late client gets the latest mesh

        destination = tmp_path / "client" / ref.name
        first = ArtifactDownload(job_id, ref, destination, window=2, chunk_bytes=4096)
        _download(connection, first, stop=lambda: first.received >= 12_000)
        connection.open()                                           # the link drops and comes back
        connection.wait_connected(30)
        resumed_at = first.received
        _download(connection, first, stop=lambda: first.received >= resumed_at + 8192)
        assert not destination.exists() and first.partial.stat().st_size == first.received

        second = ArtifactDownload(job_id, ref, destination, window=3, chunk_bytes=4096)   # e.g. after a restart
        assert second.received == first.received > 0
        _download(connection, second)
        assert second.state == TransferState.DONE, second.error
        assert not second.partial.exists()
        back = MeshData.read(destination)
        np.testing.assert_array_equal(back.vertices, mesh.vertices)
        np.testing.assert_array_equal(back.faces, mesh.faces)
        assert ArtifactDownload(job_id, ref, destination).state == TransferState.DONE    # nothing to fetch again

        on_server = server.server.workspace.artifacts_dir(job_id) / ref.name
        data = bytearray(on_server.read_bytes())
        data[-100] ^= 0xFF                                          # same size, different content
        on_server.write_bytes(bytes(data))
        corrupt = ArtifactDownload(job_id, ref, tmp_path / "client2" / ref.name)
        _download(connection, corrupt)
        assert corrupt.state == TransferState.FAILED
        assert "does not match its SHA-256" in corrupt.error
        assert not corrupt.destination.exists() and not corrupt.partial.exists()

        missing = ArtifactDownload(job_id, p.ArtifactRef("gone.npz", 10, "0" * 64, "final_mesh"),
                                   tmp_path / "client3" / "gone.npz")
        _download(connection, missing)
        assert missing.state == TransferState.FAILED and "has no artifact 'gone.npz'" in missing.error
        connection.close()


def test_wait_sleeps_until_a_message_arrives(tmp_path):
    """Scripts pump with poll + wait: wait sleeps while nothing comes and wakes as soon as something does."""
    with ServerThread(tmp_path / "workspace") as server:
        connection = Connection(server.address)
        connection.open()
        connection.wait_connected(30)
        connection.poll(0.01)
        started = time.monotonic()
        connection.wait(0.2)                      # nothing was asked: a whole sleep
        assert time.monotonic() - started >= 0.15
        connection.request(p.MessageType.LIST_JOBS, {})
        started = time.monotonic()
        connection.wait(5.0)                      # the reply wakes it
        assert time.monotonic() - started < 2.0
        assert any(m.type == p.MessageType.JOBS for m in connection.poll(0.01))
        connection.close()
