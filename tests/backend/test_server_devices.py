"""One worker per device: with two devices (here CARRARA_JOB_DEVICES=cpu,cpu, as a 2-GPU host has cuda:0 and
cuda:1) two reconstructions run at once on a real server, and each job's record names its device."""
from __future__ import annotations

import time

import pytest

from carrara.addon.client.connection import Connection
from carrara.backend.server import capabilities
from carrara.shared import protocol as p
from engine_scenes import SceneTruth, cached_scene
from testkit import ServerThread


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneTruth:
    return cached_scene(tmp_path_factory)


def _config(scene: SceneTruth, **extra) -> dict:
    return {"dataset": {"path": str(scene.folder)}, "sphere_center": [float(v) for v in scene.sphere_center],
            "sphere_radius": float(scene.sphere_radius), "preset": "ci", "iterations": 4, "device": "cpu",
            "preview_every_s": 0, "mesh_resolution": 32, "texture": False, "decimate_faces": 0,
            "export_formats": [], **extra}


def _states_when_the_first_ends(connection: Connection, job_ids: list[str], timeout_s: float = 240) -> dict:
    """Every job's state at the moment the first one finished, then waits for all to end."""
    now = {j: connection.call(p.MessageType.ATTACH, job_id=j).body["job"]["state"] for j in job_ids}
    at_first_end = dict(now) if "finished" in now.values() else None
    deadline = time.monotonic() + timeout_s
    while any(state not in ("finished", "failed") for state in now.values()):
        assert time.monotonic() < deadline, now
        for message in connection.poll(0.05):
            if message.type == p.MessageType.EVENT and message.body["event"] == "state":
                now[message.job_id] = message.body["state"]
                if at_first_end is None and message.body["state"] == "finished":
                    at_first_end = dict(now)
    assert set(now.values()) == {"finished"}, now
    return at_first_end


def test_two_devices_run_two_jobs_at_once_and_name_them(scene, tmp_path, monkeypatch):
    monkeypatch.setenv(capabilities.JOB_DEVICES_ENV, "cpu,cpu")
    with ServerThread(tmp_path / "workspace") as server:
        connection = Connection(server.address)
        connection.open()
        connection.wait_connected(60)
        assert connection.welcome["capabilities"]["job_devices"] == ["cpu", "cpu"]
        jobs = [connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": _config(scene)}).job_id
                for _ in range(2)]
        # one worker would keep the second job queued until the first ended
        assert sorted(_states_when_the_first_ends(connection, jobs).values()) == ["finished", "running"]
        listed = {job["job_id"]: job for job in connection.call(p.MessageType.LIST_JOBS).body["jobs"]}
        assert [(listed[j]["device"], listed[j]["devices"]) for j in jobs] == [("cpu", ["cpu"])] * 2
        connection.close()


def test_job_devices_are_every_gpu_or_the_one_device(monkeypatch):
    monkeypatch.delenv(capabilities.JOB_DEVICES_ENV, raising=False)
    assert capabilities.job_devices({"device": "cuda", "gpu_count": 2}) == ["cuda:0", "cuda:1"]
    assert capabilities.job_devices({"device": "cpu", "gpu_count": 2}) == ["cpu"]
    monkeypatch.setenv(capabilities.JOB_DEVICES_ENV, "cuda:0,cuda:2")
    with pytest.raises(RuntimeError, match="'cuda:2' is not 'cpu' or 'cuda:N' of the 2 GPUs"):
        capabilities.job_devices({"device": "cuda", "gpu_count": 2})
