"""The sidebar panels drawn into a recording layout: connection state, capabilities, errors, and each job with
its progress bar and the buttons that fit its state."""
import bpy

from carrara.addon.panels import backend as panel_backend
from carrara.addon.panels.progress_text import duration_text
from testkit import draw_panel as _draw


def test_backend_panel_shows_state_capabilities_and_errors(registered_addon):
    status = bpy.context.window_manager.carrara_backend
    layout = _draw(panel_backend.CARRARA_PT_backend)
    assert layout.texts()[0] == "Not connected"

    status.state, status.address, status.server_version = "connected", "tcp://127.0.0.1:5555", "0.1.0"
    status.device, status.gpu_name, status.gpu_memory_gb = "cuda", "NVIDIA H100 80GB HBM3", 85.0
    status.torch_version, status.cuda_version, status.tinycudann = "2.13.0", "12.8", True
    status.job_kinds = "check_dataset, reconstruct"
    status.last_error = "20261122-1: job x is finished; only queued or running jobs can be cancelled"
    labels = _draw(panel_backend.CARRARA_PT_backend).texts()
    assert labels[0] == "Connected to tcp://127.0.0.1:5555"
    assert "GPU: NVIDIA H100 80GB HBM3 (85.0 GB)" in labels
    assert "torch 2.13.0 · CUDA 12.8 · tiny-cuda-nn yes" in labels
    assert "Backend 0.1.0 · jobs: check_dataset, reconstruct" in labels
    assert status.last_error in labels
    operators = _draw(panel_backend.CARRARA_PT_backend).texts("operator")
    assert operators == ["Reconnect", "Start Local", "Jobs"]

    status.state, status.problem = "lost", "no answer from the backend at tcp://127.0.0.1:5555 for 4 s"
    status.device, status.local_backend = "cpu", "the local backend exited with code -9: Killed"
    labels = _draw(panel_backend.CARRARA_PT_backend).texts()
    assert labels[:3] == ["Backend not answering", status.problem, f"Local backend: {status.local_backend}"]
    assert "Device: CPU (no CUDA GPU in use: training is slow)" in labels


def test_jobs_panel_shows_each_job_with_a_progress_bar(registered_addon):
    assert _draw(panel_backend.CARRARA_PT_jobs).texts() == ["No jobs in this file yet"]
    runs = bpy.context.scene.carrara.runs
    training = runs.add()
    training.job_id, training.kind, training.state, training.phase = "job-a", "reconstruct", "running", "train"
    training.iteration, training.total, training.progress = 1200, 20000, 0.06
    training.loss, training.psnr, training.rate, training.eta_s = 0.0213, 24.1, 35.2, 534
    failed = runs.add()
    failed.job_id, failed.kind, failed.state, failed.reason = "job-b", "check_dataset", "failed", "failed"
    failed.error, failed.traceback = "3 problem(s) would stop training", ""
    failed.iteration, failed.total, failed.progress, failed.phase = 7, 11, 7 / 11, "check"
    layout = _draw(panel_backend.CARRARA_PT_jobs)
    bars = [kwargs for name, _, kwargs in layout.calls if name == "progress"]
    assert bars == [{"factor": failed.progress, "type": 'BAR', "text": "check 7/11"},
                    {"factor": training.progress, "type": 'BAR',
                     "text": "1200/20000 · loss 0.0213 · 24.1 dB · 35.2 it/s · ETA 8m 54s"}]
    labels = layout.texts()
    assert "check_dataset job-b" in labels and "reconstruct job-a" in labels
    assert "3 problem(s) would stop training" in labels
    assert layout.operators() == [("carrara.check_dataset", {}),
                                  ("carrara.job_show_traceback", {"job_id": "job-b"}),
                                  ("carrara.job_resume", {"job_id": "job-b"}),
                                  ("carrara.job_show_log", {"job_id": "job-b"}),
                                  ("carrara.job_remove", {"job_id": "job-b"}),       # over: it may go
                                  ("carrara.job_cancel", {"job_id": "job-a"}),
                                  ("carrara.job_show_log", {"job_id": "job-a"}),      # running: no Remove
                                  ("carrara.jobs_prune", {})]


def test_durations_read_like_a_clock():
    assert [duration_text(s) for s in (5, 65, 3725)] == ["5s", "1m 05s", "1h 02m"]
