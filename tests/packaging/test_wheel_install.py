"""The wheel as shipped, not the checkout: installed into a fresh virtual environment, it serves and trains.

The environment is made without the test extras (no bpy), the way a GPU server installs the backend
(``pip install -c constraints.txt carrara-*.whl``). Every command runs from a folder outside the checkout, so
nothing can be imported from it by accident.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from carrara.shared import protocol as p
from testkit import REPO_ROOT, free_tcp_port, stop_process


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel and its pinned dependencies; its ``bin`` folder."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                           "-c", str(REPO_ROOT / "constraints.txt"), str(dist["wheel"])],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "bin"


def _run(venv: Path, cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_package_comes_from_the_venv_not_the_checkout(venv, tmp_path):
    done = _run(venv, tmp_path, "python", "-c", "import carrara.backend.mesh.pipeline as m; print(m.__file__)")
    assert done.returncode == 0, done.stderr
    installed = Path(done.stdout.strip()).resolve()
    assert venv.parent.resolve() in installed.parents and REPO_ROOT not in installed.parents, installed


def test_the_installed_command_serves_over_zeromq(venv, tmp_path):
    port = free_tcp_port()
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen([str(venv / "carrara-backend"), "serve", "--bind", f"tcp://127.0.0.1:{port}",
                               "--workspace", str(tmp_path / "workspace")], cwd=tmp_path, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger, sock.rcvtimeo = 0, 2000
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        deadline, reply = time.monotonic() + 60, None
        while reply is None and time.monotonic() < deadline and server.poll() is None:
            hello = p.Message(p.MessageType.HELLO, {"client": "wheel-test"}, request_id=p.new_request_id())
            sock.send_multipart(p.encode(hello))
            try:
                reply = p.decode(sock.recv_multipart())
            except zmq.Again:
                sock.close()                      # a DEALER keeps unanswered requests queued: start afresh
                sock = zmq.Context.instance().socket(zmq.DEALER)
                sock.linger, sock.rcvtimeo = 0, 2000
                sock.connect(f"tcp://127.0.0.1:{port}")
        assert reply is not None, (tmp_path / "serve.log").read_text()
        assert reply.type == p.MessageType.WELCOME and reply.request_id == hello.request_id
    finally:
        sock.close()
        assert stop_process(server) == 0, (tmp_path / "serve.log").read_text()
        log.close()


def test_the_installed_command_trains_and_extracts_the_bundled_chair(venv, tmp_path):
    run, mesh = tmp_path / "run", tmp_path / "chair.ply"
    trained = _run(venv, tmp_path, "carrara-backend", "train", str(REPO_ROOT / "examples" / "chair"), "--out",
                   str(run), "--preset", "ci", "--iters", "3", "--device", "cpu")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (run / "meshes" / "final.ply").is_file() and (run / "meshes" / "final.glb").is_file()
    extracted = _run(venv, tmp_path, "carrara-backend", "extract", str(run), "--resolution", "32", "--out",
                     str(mesh), "--device", "cpu")
    assert extracted.returncode == 0, extracted.stderr[-3000:]
    assert mesh.stat().st_size > 0 and "faces from iteration 3" in extracted.stderr
