"""The pump against a real backend subprocess: hello and capabilities in the properties, a job's events in its
run, cancel and resume, a SIGKILLed backend noticed and followed again after its restart (by hand, and by the
add-on's own auto-start), re-attach after reopening a .blend, and a final mesh downloaded and handed over."""
import os
import signal
import sys
import time

import bpy
import pytest

from carrara.addon.client import pump
from carrara.addon.client.keep_alive import connect
from carrara.addon.client.launches import submit_job
from carrara.addon.client.mesh_delivery import downloads_dir
from carrara.addon.client.runs import find_run, followed_job_ids
from carrara.addon.client.runtime import runtime
from carrara.addon.properties.runs import MISSING, SUBMITTING
from carrara.shared import protocol as p
from testkit import (ServerThread, finished_job_with_mesh, free_tcp_port, sphere_mesh, start_backend, stop_process,
                     write_colmap_dataset)

SLOW = {"count": 24, "size": (3000, 3000)}      # a dataset check of a few seconds: time to cancel or kill


def _status():
    return bpy.context.window_manager.carrara_backend


def _wait(condition, timeout_s: float, what: str) -> None:
    assert pump.process_pending(timeout_s, until=condition), \
        f"timed out waiting for {what}: connection {_status().state} ({_status().problem}); runs " \
        f"{[(r.job_id, r.state, r.iteration, r.reason) for r in bpy.context.scene.carrara.runs]}"


def _run(job_id: str):
    return find_run(job_id)


def _submit_slow_check(tmp_path) -> str:
    dataset = write_colmap_dataset(tmp_path / "dataset", **SLOW)
    scene = bpy.context.scene
    run = submit_job(scene, "check_dataset", {"dataset": {"path": str(dataset)}})
    assert (run.state, run.job_id) == (SUBMITTING, "")
    _wait(lambda: scene.carrara.runs[0].job_id != "", 15, "the submit reply")
    job_id = scene.carrara.runs[0].job_id
    _wait(lambda: _run(job_id).state == "running" and _run(job_id).iteration > 0, 30, "progress")
    return job_id


def test_pump_follows_a_job_through_cancel_resume_and_a_killed_backend(backend_preferences, tmp_path):
    port = free_tcp_port()
    workspace = tmp_path / "workspace"
    backend_preferences.backend_address = f"tcp://127.0.0.1:{port}"
    backend = start_backend(workspace, port)
    try:
        connect()
        _wait(lambda: _status().state == "connected", 30, "the welcome")
        import torch
        status = _status()
        assert (status.device, status.torch_version, status.server_version) == ("cpu", torch.__version__, "0.1.0")
        assert "check_dataset" in status.job_kinds and status.address == f"tcp://127.0.0.1:{port}"

        job_id = _submit_slow_check(tmp_path)
        run = _run(job_id)
        assert (run.kind, run.total, run.phase, run.loss) == ("check_dataset", SLOW["count"], "check", -1.0)
        assert 0 < run.progress < 1 and run.rate > 0

        assert bpy.ops.carrara.job_cancel(job_id=job_id) == {'FINISHED'}
        _wait(lambda: _run(job_id).state == "cancelled", 30, "the cancel")
        stopped_at = _run(job_id).iteration
        assert stopped_at < SLOW["count"] and "stopped after photo" in _run(job_id).last_log

        assert bpy.ops.carrara.job_resume(job_id=job_id) == {'FINISHED'}
        _wait(lambda: _run(job_id).state == "running" and _run(job_id).iteration > stopped_at, 30, "the resume")

        os.kill(backend.pid, signal.SIGKILL)
        backend.wait(10)
        killed = time.monotonic()
        _wait(lambda: _status().state == "lost", p.HEARTBEAT_TIMEOUT_S + 3, "the loss to be noticed")
        assert time.monotonic() - killed < p.HEARTBEAT_TIMEOUT_S + 2
        assert "no answer from the backend" in _status().problem

        backend = start_backend(workspace, port)
        _wait(lambda: _status().state == "connected", 30, "the reconnect")
        _wait(lambda: _run(job_id).state == "finished", 60, "the resumed job to finish")
        run = _run(job_id)
        assert (run.iteration, run.total, run.progress, run.error) == (SLOW["count"], SLOW["count"], 1.0, "")
        assert run.last_log.startswith("dataset OK: 24 photos")
        assert run.report_artifact == "dataset_report.json"
    finally:
        stop_process(backend)


def test_auto_start_brings_a_killed_local_backend_back(backend_preferences, tmp_path):
    port = free_tcp_port()
    backend_preferences.backend_address = f"tcp://127.0.0.1:{port}"
    backend_preferences.auto_start = True
    backend_preferences.python = sys.executable
    backend_preferences.workspace = str(tmp_path / "workspace")
    local = runtime().local
    started = []
    try:
        connect()
        assert local.running, _status().local_backend
        started.append(local.process)
        _wait(lambda: _status().state == "connected", 30, "the welcome from the started backend")
        assert _status().local_backend.startswith(f"running (pid {started[0].pid}")
        job_id = _submit_slow_check(tmp_path)

        os.kill(started[0].pid, signal.SIGKILL)
        _wait(lambda: "the local backend exited with code -9" in _status().last_error, 5, "the death to be noticed")
        _wait(lambda: local.running, 15, "the rate-limited restart")
        started.append(local.process)
        assert started[1].pid != started[0].pid
        _wait(lambda: _run(job_id).state == "finished", 60, "the job to finish on the restarted backend")
        assert _status().state == "connected"
    finally:
        for process in started:
            stop_process(process)


def test_reopened_file_re_attaches_and_the_final_mesh_is_delivered(backend_preferences, tmp_path):
    mesh = sphere_mesh(2)
    job_id, ref = finished_job_with_mesh(tmp_path / "workspace", mesh)
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        run = bpy.context.scene.carrara.runs.add()
        run.job_id, run.name, run.kind, run.state = job_id, job_id, "reconstruct", "running"   # as saved mid-run
        blend = tmp_path / "scene.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        bpy.context.scene.carrara.runs.clear()
        bpy.ops.wm.open_mainfile(filepath=str(blend))          # load_post: the pump follows the file's jobs
        assert find_run(job_id).state == "running"
        _wait(lambda: _run(job_id).final_artifact == ref["name"], 30, "the final mesh")
        run = _run(job_id)
        assert run.state == "finished" and run.error == ""
        downloaded = downloads_dir() / job_id / ref["name"]
        assert downloaded.stat().st_size == ref["size"]
        assert not runtime().downloads
        assert job_id not in followed_job_ids()            # delivered: nothing more to hear about


def test_a_job_the_backend_does_not_know_is_marked_missing(backend_preferences, tmp_path):
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        run = bpy.context.scene.carrara.runs.add()
        run.job_id, run.kind, run.state = "20200101-000000-abcdef", "reconstruct", "running"
        connect()
        _wait(lambda: _run("20200101-000000-abcdef").state == MISSING, 30, "the unknown job")
        assert "does not know this job" in _run("20200101-000000-abcdef").reason


def test_a_refused_submit_fails_its_run(backend_preferences, tmp_path):
    with ServerThread(tmp_path / "workspace") as server:
        backend_preferences.backend_address = server.address
        connect()
        _wait(lambda: _status().state == "connected", 30, "the welcome")
        submit_job(bpy.context.scene, "check_dataset", {"dataset": {"path": "/d"}, "speed": 3})
        runs = bpy.context.scene.carrara.runs
        _wait(lambda: runs[0].state == "failed", 10, "the refusal")
        assert "'speed' is not a check_dataset setting" in runs[0].error and runs[0].job_id == ""


def test_operators_report_what_is_wrong(backend_preferences):
    with pytest.raises(RuntimeError, match="No run of job 'nothing' in this file"):
        bpy.ops.carrara.job_cancel(job_id="nothing")
    run = bpy.context.scene.carrara.runs.add()
    run.job_id, run.state = "20200101-000000-abcdef", "running"
    with pytest.raises(RuntimeError, match="not connected to the backend"):
        bpy.ops.carrara.job_cancel(job_id=run.job_id)
    assert bpy.ops.carrara.job_show_traceback(job_id=run.job_id) == {'CANCELLED'}     # a warning: no error yet
    run.error, run.traceback = "RuntimeError: boom", "Traceback (most recent call last):\n  ...\nRuntimeError: boom"
    with pytest.raises(RuntimeError, match="boom"):
        bpy.ops.carrara.job_show_traceback(job_id=run.job_id)
    assert "Traceback" in bpy.data.texts[f"Carrara {run.job_id} error"].as_string()
    backend_preferences.server_public_key = "not a key"
    backend_preferences.client_keys = "nor this"
    with pytest.raises(RuntimeError, match="the key settings are unusable"):
        bpy.ops.carrara.backend_connect()


def test_a_submit_the_backend_never_answered_does_not_wait_forever(backend_preferences):
    backend_preferences.backend_address = f"tcp://127.0.0.1:{free_tcp_port()}"     # nothing listens there
    connect()
    assert _status().state == "connecting"
    submit_job(bpy.context.scene, "check_dataset", {"dataset": {"path": "/d"}})
    runs = bpy.context.scene.carrara.runs
    _wait(lambda: runs[0].state == MISSING, p.HEARTBEAT_TIMEOUT_S + 3, "the submit to be given up")
    assert _status().state == "lost" and "connection dropped before the backend answered" in runs[0].reason
    assert runtime().local.process is None                # auto-start is off: nothing was started
