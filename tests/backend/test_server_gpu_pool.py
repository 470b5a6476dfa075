"""A reconstruction on a pool of devices on a real ``carrara-backend serve``: with CARRARA_JOB_DEVICES=cpu,cpu (as a
2-GPU host has cuda:0 and cuda:1) a job with ``gpus`` 2 trains as two torchrun ranks over gloo, rank 0's progress
and meshes arrive as the job's events, a job asking for more devices than the server has is refused naming
``gpus``, and a rank that fails makes a failed job while the server serves on."""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from carrara.addon.client.connection import Connection, RemoteError
from carrara.backend.server import capabilities
from carrara.backend.train.checkpoint import list_checkpoints
from carrara.shared import protocol as p
from testkit import (EXAMPLE_CHAIR, connect_client, free_tcp_port, job_events, start_backend, stop_process,
                     write_colmap_dataset)

TERMINAL = {"finished", "failed", "cancelled", "interrupted"}


def _ended(events: list[dict]) -> bool:
    return bool(events) and events[-1]["event"] == "state" and events[-1]["state"] in TERMINAL


def _chair(**extra) -> dict:
    """The bundled chair (400x400, shrunk to 100x100), a few steps of the ci preset, a small mesh."""
    return {"dataset": {"path": str(EXAMPLE_CHAIR)}, "sphere_center": [0.0, 0.0, 0.0], "sphere_radius": 1.5,
            "preset": "ci", "iterations": 6, "device": "cpu", "downscale": 4.0, "preview_every_s": 0.0,
            "mesh_resolution": 32, "texture": False, "decimate_faces": 0, "export_formats": ["ply"], **extra}


@contextmanager
def serving(workspace: Path, devices: str) -> Iterator[Connection]:
    """A real backend process whose jobs run on ``devices`` (CARRARA_JOB_DEVICES), and a connected client."""
    port = free_tcp_port()
    process = start_backend(workspace, port, "--device", "cpu", env={capabilities.JOB_DEVICES_ENV: devices})
    try:
        connection = connect_client(f"tcp://127.0.0.1:{port}", 60)
        yield connection
        connection.close()
    finally:
        stop_process(process)


@pytest.fixture
def pool_server(tmp_path):
    """A backend with two job devices: its workspace and a connected client."""
    with serving(tmp_path / "workspace", "cpu,cpu") as connection:
        yield tmp_path / "workspace", connection


def _check(connection: Connection, dataset: Path) -> str:
    return connection.call(p.MessageType.SUBMIT, {"kind": "check_dataset", "config": {
        "dataset": {"path": str(dataset)}}}).job_id


def _states_in_order(connection: Connection, job_ids: list[str], timeout_s: float) -> tuple[list, dict]:
    """Every (job, state) change of ``job_ids`` in the order the server made them, and each job's events."""
    order, events = [], {job_id: [] for job_id in job_ids}
    deadline = time.monotonic() + timeout_s
    while not all(_ended(e) for e in events.values()):
        assert time.monotonic() < deadline, order
        for message in connection.poll(0.05):
            if message.type == p.MessageType.EVENT and message.job_id in events:
                events[message.job_id].append(message.body)
                if message.body["event"] == "state":
                    order.append((message.job_id, message.body["state"]))
    return order, events


def test_a_two_device_job_trains_on_both_and_reports_through_rank_zero(pool_server, tmp_path):
    workspace, connection = pool_server
    assert connection.welcome["capabilities"]["job_devices"] == ["cpu", "cpu"]
    slow = write_colmap_dataset(tmp_path / "slow", 16, (3000, 3000))        # a check that takes a few seconds
    before = _check(connection, slow)
    job_id = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _chair(gpus=2)}).job_id
    after = _check(connection, write_colmap_dataset(tmp_path / "quick", 2))
    order, all_events = _states_in_order(connection, [before, job_id, after], timeout_s=120)
    # first come first served: the pool gathers the free worker and the one the first job frees; the later job,
    # though one device was free all along, waits until the pool job ends
    assert order.index((job_id, "running")) > order.index((before, "finished")), order
    assert order.index((after, "running")) > order.index((job_id, "finished")), order
    events = all_events[job_id]
    assert events[-1]["state"] == "finished", events[-5:]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["iteration"] == progress[-1]["total"] == 6
    finals = [e["artifact"] for e in events if e["event"] == "final_mesh"]
    assert len(finals) == 1 and finals[0]["iteration"] == 6 and finals[0]["stats"]["faces"] > 0
    assert any(e["event"] == "artifact" and e["artifact"]["kind"] == "ply" for e in events)
    logs = [e["line"] for e in events if e["event"] == "log"]
    assert any("training on 2 devices (cpu, cpu) through torchrun" in line for line in logs)
    assert sum("photos train" in line for line in logs) == 1           # rank 0 alone speaks
    job = connection.call(p.MessageType.ATTACH, job_id=job_id).body["job"]
    assert (job["device"], job["devices"]) == ("cpu", ["cpu", "cpu"])
    checkpoints = workspace / "jobs" / job_id / "checkpoints"
    assert [c.name for c in list_checkpoints(checkpoints)] == ["ckpt_00000006.pt"]
    assert sorted(path.name for path in checkpoints.iterdir()) == ["ckpt_00000006.pt"]   # no second writer's temp
    assert (workspace / "jobs" / job_id / "artifacts" / finals[0]["name"]).is_file()

    with pytest.raises(RemoteError, match=r"config field 'gpus' 3: this backend has 2 job devices \(cpu, cpu\); "
                                          r"ask for 2 or fewer"):
        connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _chair(gpus=3)})


def _rank_pids(job_dir: Path) -> dict[int, int]:
    """RANK -> pid of the processes torchrun started for this job (read from /proc: they name its spec)."""
    spec = str(job_dir / "ranks" / "spec.json")
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and spec in (proc / "cmdline").read_text().split("\0") \
                    and "reconstruct_rank" in (proc / "cmdline").read_text():
                env = dict(e.split("=", 1) for e in (proc / "environ").read_text().split("\0") if "=" in e)
                found[int(env["RANK"])] = int(proc.name)
        except (OSError, KeyError, ValueError):
            continue
    return found


def test_a_failing_rank_fails_the_job_with_its_error_and_the_server_serves_on(pool_server, tmp_path):
    workspace, connection = pool_server
    (tmp_path / "empty").mkdir()
    broken = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _chair(
        gpus=2, dataset={"path": str(tmp_path / "empty")})}).job_id
    events = job_events(connection, broken, _ended, timeout_s=60)
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert events[-1]["state"] == "failed" and len(errors) == 1, events[-5:]
    assert errors[0].startswith("rank ") and " of 2: " in errors[0] and str(tmp_path / "empty") in errors[0]

    job_id = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _chair(
        gpus=2, iterations=300)}).job_id
    job_events(connection, job_id, lambda events: any(e["event"] == "progress" for e in events), timeout_s=60)
    pids = _rank_pids(workspace / "jobs" / job_id)
    assert sorted(pids) == [0, 1]
    os.kill(pids[1], signal.SIGKILL)            # as the kernel's OOM killer ends a rank: no words of its own
    events = job_events(connection, job_id, _ended, timeout_s=60)
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert events[-1]["state"] == "failed", events[-5:]
    assert len(errors) == 1 and errors[0].startswith("rank 1 of 2 ended: exit code -9, Signal 9 (SIGKILL)"), errors
    time.sleep(0.5)
    assert not _rank_pids(workspace / "jobs" / job_id)         # rank 0 did not outlive the job

    job_id = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _chair()}).job_id
    assert job_events(connection, job_id, _ended, timeout_s=60)[-1]["state"] == "finished"


def test_a_cancelled_pool_job_checkpoints_once_and_resumes_on_one_device(tmp_path):
    workspace = tmp_path / "workspace"
    with serving(workspace, "cpu,cpu") as connection:
        job_id = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _chair(
            gpus=2, iterations=30)}).job_id
        job_events(connection, job_id, lambda events: any(e["event"] == "progress" for e in events), timeout_s=60)
        connection.call(p.MessageType.CANCEL, job_id=job_id)
        events = job_events(connection, job_id, _ended, timeout_s=60)
        assert events[-1]["state"] == "cancelled", events[-5:]
        written = list_checkpoints(workspace / "jobs" / job_id / "checkpoints")
        assert len(written) == 1, written
        stopped_at = int(written[0].stem.split("_")[1])
        assert any(f"stopped at iteration {stopped_at} on request" in e.get("line", "") for e in events)
    with serving(workspace, "cpu") as connection:      # the host has one device now: the run resumes on it
        connection.call(p.MessageType.ATTACH, job_id=job_id)
        assert connection.call(p.MessageType.RESUME, job_id=job_id).body["job"]["state"] == "queued"
        events = job_events(connection, job_id, _ended, timeout_s=120)
        assert events[-1]["state"] == "finished", events[-5:]
        started = [e["reason"] for e in events if e["event"] == "state" and e["state"] == "running"]
        assert len(started) == 1 and "on 1 devices, not the 2 it asked for" in started[0], started
        logs = [e["line"] for e in events if e["event"] == "log"]
        assert f"resumed from {written[0].name} at iteration {stopped_at}" in logs
        assert not any("through torchrun" in line for line in logs)
