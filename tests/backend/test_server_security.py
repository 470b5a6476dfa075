"""CURVE keys: made by ``carrara-backend keys``, required beyond loopback, and a client with the wrong key gets
nothing at all while an authorised one is served."""
import subprocess
import sys
import time

import pytest
import zmq.auth

from carrara.addon.client.connection import Connection, CurveKeys, NotConnectedError, load_curve_keys
from carrara.backend.server.app import Server, serve
from carrara.backend.server.security import is_loopback, make_keys
from carrara.shared import protocol as p
from testkit import ServerThread, free_tcp_port


def test_keys_verb_writes_both_key_pairs_and_authorises_the_client(tmp_path):
    keys = tmp_path / "keys"
    result = subprocess.run([sys.executable, "-m", "carrara.backend", "keys", str(keys)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    written = {line.rsplit("/", 1)[-1] for line in result.stdout.split()}
    assert written == {"server.key", "server.key_secret", "client.key", "client.key_secret"}
    assert (keys / "authorized_clients" / "client.key").read_text() == (keys / "client.key").read_text()
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    before = (keys / "server.key_secret").read_text()
    make_keys(keys)                                   # a second run keeps the keys clients already hold
    assert (keys / "server.key_secret").read_text() == before


@pytest.mark.parametrize("endpoint, local", [("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True),
                                             ("tcp://[::1]:5555", True), ("ipc:///tmp/carrara", True),
                                             ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
                                             ("tcp://192.168.1.20:5555", False)])
def test_loopback_endpoints(endpoint, local):
    assert is_loopback(endpoint) is local


def test_a_non_loopback_bind_without_keys_is_refused(tmp_path, capsys):
    assert serve(f"tcp://0.0.0.0:{free_tcp_port()}", tmp_path / "workspace", None, "cpu") == 2
    assert "refusing to bind" in capsys.readouterr().err
    with pytest.raises(ValueError, match="server.key_secret is missing"):
        Server(f"tcp://0.0.0.0:{free_tcp_port()}", tmp_path / "workspace", tmp_path / "no-keys")


def test_curve_admits_the_authorised_client_and_refuses_others(tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys)
    stranger_public, stranger_secret = zmq.auth.load_certificate(
        zmq.auth.create_certificates(tmp_path, "stranger")[1])
    port = free_tcp_port()
    with ServerThread(tmp_path / "workspace", port, keys_dir=keys):
        address = f"tcp://127.0.0.1:{port}"
        good = Connection(address, load_curve_keys(str(keys / "server.key"), str(keys / "client.key_secret")))
        good.open()
        good.wait_connected(30)
        assert good.call(p.MessageType.LIST_JOBS).body["total"] == 0

        strangers = [Connection(address, CurveKeys(good.curve.server_public, stranger_public, stranger_secret)),
                     Connection(address, None)]      # a wrong key pair, and no encryption at all
        for stranger in strangers:
            stranger.open()
        deadline = time.monotonic() + p.HEARTBEAT_TIMEOUT_S + 5
        while any(s.state == "connecting" for s in strangers) and time.monotonic() < deadline:
            assert not [message for s in strangers for message in s.poll(0.01)]     # never a single reply
            time.sleep(0.02)
        for stranger in strangers:
            assert stranger.state == "lost" and "refused this add-on's key" in stranger.problem
            with pytest.raises(NotConnectedError):
                stranger.list_jobs()
            stranger.close()
        assert good.call(p.MessageType.LIST_JOBS).type == p.MessageType.JOBS     # still served
        good.close()


def test_with_keys_a_server_may_listen_beyond_loopback(tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys)
    port = free_tcp_port()
    with ServerThread(tmp_path / "workspace", port, keys_dir=keys, host="0.0.0.0"):
        connection = Connection(f"tcp://127.0.0.1:{port}",
                                load_curve_keys(str(keys / "server.key"), str(keys / "client.key_secret")))
        connection.open()
        connection.wait_connected(30)
        connection.close()
