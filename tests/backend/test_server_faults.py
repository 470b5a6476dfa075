"""Faults a remote backend meets: a SIGKILL while a reconstruction trains and one while it writes a checkpoint.
The job resumes at the next start from its last checkpoint, losing at most one checkpoint interval, and what the
killed write left is cleared away."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from carrara.addon.client.connection import Connection
from carrara.shared import protocol as p
from testkit import free_tcp_port, stop_process

#: Iterations between checkpoints: the ci preset's, made short so a CPU reaches several in seconds.
INTERVAL = 8
TEMP = re.compile(r"^\.ckpt_(\d{8})\.pt\.\d+\.tmp$")
#: ``carrara-backend serve`` with the ci preset checkpointing every INTERVAL iterations.
SERVE = ("import dataclasses, sys\n"
         "from carrara.backend.train import presets\n"
         "presets.PRESET_TABLE['ci'] = dataclasses.replace(presets.PRESET_TABLE['ci'], checkpoint_every=int(sys.argv[1]))\n"
         "from carrara.backend.cli import main\n"
         "sys.exit(main(sys.argv[2:]))\n")


def start_backend(workspace: Path, port: int) -> subprocess.Popen:
    log = open(f"{workspace}.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-c", SERVE, str(INTERVAL), "serve", "--bind",
                                 f"tcp://127.0.0.1:{port}", "--workspace", str(workspace), "--device", "cpu"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def _connect(port: int) -> Connection:
    connection = Connection(f"tcp://127.0.0.1:{port}")
    connection.open()
    connection.wait_connected(60)
    return connection


def _progress_until(connection: Connection, job_id: str, done, timeout_s: float = 120.0) -> int:
    """Follow the job's progress events until ``done(iteration)``; the last iteration heard."""
    deadline, iteration = time.monotonic() + timeout_s, 0
    while not done(iteration):
        assert time.monotonic() < deadline, f"job {job_id} stalled at iteration {iteration}"
        for message in connection.poll(0.01):
            if message.type == p.MessageType.EVENT and message.job_id == job_id:
                if message.body["event"] == "progress":
                    iteration = message.body["iteration"]
                assert message.body.get("state") not in ("failed", "finished"), message.body
    return iteration


def _kill(backend) -> None:
    os.kill(backend.pid, signal.SIGKILL)
    backend.wait(10)


def _resumed_at(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"resumed from ckpt_\d{8}\.pt at iteration (\d+)", log)]


def test_kill_9_while_training_and_while_writing_a_checkpoint_then_resume(tmp_path, tmp_path_factory, capsys):
    from engine_scenes import cached_scene
    scene = cached_scene(tmp_path_factory)
    workspace, port = tmp_path / "workspace", free_tcp_port()
    config = {"dataset": {"path": str(scene.folder)}, "sphere_center": scene.sphere_center.tolist(),
              "sphere_radius": scene.sphere_radius, "preset": "ci", "iterations": 3 * INTERVAL, "device": "cpu",
              "preview_every_s": 0.0, "mesh_resolution": 32, "texture": False, "export_formats": ["ply"]}
    lost = []

    backend = start_backend(workspace, port)            # 1. killed while it trains, past its first checkpoint
    try:
        connection = _connect(port)
        job_id = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": config}).job_id
        checkpoints = workspace / "jobs" / job_id / "checkpoints"
        heard = _progress_until(connection, job_id, lambda i: i >= INTERVAL + INTERVAL // 4)
        _kill(backend)
        connection.close()
    finally:
        stop_process(backend)
    saved = max(int(path.name[5:13]) for path in checkpoints.glob("ckpt_*.pt"))
    assert saved == INTERVAL

    backend = start_backend(workspace, port)            # 2. killed while it writes its next checkpoint
    try:
        connection = _connect(port)
        connection.attach(job_id)
        deadline = time.monotonic() + 120
        while not [name for name in os.listdir(checkpoints) if TEMP.match(name)]:
            assert time.monotonic() < deadline, "no checkpoint write was seen"
            time.sleep(0.0005)
        _kill(backend)
        connection.close()
    finally:
        stop_process(backend)
    log = (workspace / "jobs" / job_id / "log.txt").read_text()
    resumed = _resumed_at(log)
    assert resumed == [INTERVAL]
    lost.append(heard - resumed[0])
    killed_write = [name for name in os.listdir(checkpoints) if TEMP.match(name)]
    assert killed_write, "the kill came after the write finished"
    writing = int(TEMP.match(killed_write[0]).group(1))

    backend = start_backend(workspace, port)            # 3. resumes from the last whole checkpoint and finishes
    try:
        connection = _connect(port)
        connection.attach(job_id)
        deadline = time.monotonic() + 180
        while connection.call(p.MessageType.ATTACH, job_id=job_id).body["job"]["state"] != "finished":
            assert time.monotonic() < deadline
            connection.poll(0.2)
        connection.close()
    finally:
        assert stop_process(backend) == 0
    log = (workspace / "jobs" / job_id / "log.txt").read_text()
    resumed = _resumed_at(log)
    assert len(resumed) == 2 and resumed[1] >= writing - INTERVAL
    lost.append(writing - resumed[1])
    assert all(0 <= n <= INTERVAL for n in lost), lost
    assert not [name for name in os.listdir(checkpoints) if TEMP.match(name)]
    assert any(Path(workspace / "jobs" / job_id / "artifacts").glob("*.ply"))
    with capsys.disabled():
        print(f"\nkill -9: iterations lost {lost} (checkpoint interval {INTERVAL})")
