"""Training under torchrun, as on a machine with several GPUs, here with two CPU processes over gloo: the ranks
stay in step (one log, one checkpoint, one mesh) and the run resumes like a single-process one, keeping its own
length."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plyfile import PlyData

from carrara.backend.reconstruct import load_trained_model
from carrara.backend.train.checkpoint import list_checkpoints
from engine_scenes import SceneTruth, cached_scene
from testkit import free_tcp_port


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneTruth:
    return cached_scene(tmp_path_factory)


def _torchrun(scene: SceneTruth, run: Path, iterations: int, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_tcp_port()), "-m", "carrara.backend", "train", str(scene.folder), "--out", str(run),
                           "--preset", "ci", "--iters", str(iterations), "--device", "cpu", *extra],
                          env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_train_one_run_and_resume_it(scene, tmp_path):
    run = tmp_path / "run"
    first = _torchrun(scene, run, 12)
    assert first.returncode == 0, first.stderr[-3000:]
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt_00000012.pt"]
    log = (run / "log.txt").read_text()
    assert log.count("bounding sphere") == 1 and log.count("final mesh:") == 1, log
    assert len(PlyData.read(str(run / "meshes" / "final.ply"))["vertex"]) > 0

    again = _torchrun(scene, run, 20, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    log = (run / "log.txt").read_text()
    assert "resumed from ckpt_00000012.pt at iteration 12" in log
    assert "resumes with its own 12 iterations, not the 20 asked for" in log
    model, _, iteration = load_trained_model(run, "cpu")
    assert iteration == 12 and all(torch.isfinite(p).all() for p in model.parameters())
