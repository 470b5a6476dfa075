"""A reconstruction on a pool of devices on a real ``carrara-backend serve``: with CARRARA_JOB_DEVICES=cpu,cpu (as a
2-GPU host has cuda:0 and cuda:1) a job with ``gpus`` 2 trains as two torchrun ranks over gloo, rank 0's progress
and meshes arrive as the job's events, a job asking for more devices than the server has is refused naming
``gpus``, and a rank that fails makes a failed job while the server serves on."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from carrara.addon.client.connection import RemoteError
from carrara.backend.server import capabilities
from carrara.backend.train.checkpoint import list_checkpoints
from carrara.shared import protocol as p
from testkit import EXAMPLE_CHAIR, connect_client, free_tcp_port, job_events, start_backend, stop_process

TERMINAL = {"finished", "failed", "cancelled", "interrupted"}


def _ended(events: list[dict]) -> bool:
    return bool(events) and events[-1]["event"] == "state" and events[-1]["state"] in TERMINAL


def _chair(**extra) -> dict:
    """The bundled chair (400x400, shrunk to 100x100), a few steps of the ci preset, a small mesh."""
    return {"dataset": {"path": str(EXAMPLE_CHAIR)}, "sphere_center": [0.0, 0.0, 0.0], "sphere_radius": 1.5,
            "preset": "ci", "iterations": 6, "device": "cpu", "downscale": 4.0, "preview_every_s": 0.0,
            "mesh_resolution": 32, "texture": False, "decimate_faces": 0, "export_formats": ["ply"], **extra}


@pytest.fixture
def pool_server(tmp_path, monkeypatch):
    """A real backend process with two job devices; its workspace and a connected client."""
    monkeypatch.setenv(capabilities.JOB_DEVICES_ENV, "cpu,cpu")
    port = free_tcp_port()
    process = start_backend(tmp_path / "workspace", port, "--device", "cpu")
    connection = connect_client(f"tcp://127.0.0.1:{port}", 60)
    yield tmp_path / "workspace", connection
    connection.close()
    stop_process(process)


def test_a_two_device_job_trains_on_both_and_reports_through_rank_zero(pool_server):
    workspace, connection = pool_server
    assert connection.welcome["capabilities"]["job_devices"] == ["cpu", "cpu"]
    job_id = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _chair(gpus=2)}).job_id
    events = job_events(connection, job_id, _ended, timeout_s=120)
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
