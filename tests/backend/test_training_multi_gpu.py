"""``carrara-backend train --gpus N`` as on a machine with several GPUs, here as N CPU processes over gloo
(``--device cpu``): the CLI starts torchrun itself, the ranks split each step's rays, a Ctrl-C stops them with one
checkpoint written once, and a run written by two ranks resumes on one."""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plyfile import PlyData

from carrara.backend import cli
from carrara.backend.jobs.extract import load_trained_model
from carrara.backend.train.checkpoint import list_checkpoints
from carrara.backend.train.distributed import Distributed
from engine_scenes import SceneTruth, cached_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneTruth:
    return cached_scene(tmp_path_factory)


def _command(scene: SceneTruth, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "carrara.backend", "train", str(scene.folder), "--out", str(run), "--preset", "ci",
            "--iters", "40", "--device", "cpu", *extra]


def test_two_cpu_ranks_train_stop_with_one_checkpoint_and_one_rank_resumes(scene, tmp_path):
    run = tmp_path / "run"
    two = subprocess.Popen(_command(scene, run, "--gpus", "2"), env=dict(os.environ, OMP_NUM_THREADS="1"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in two.stdout:            # Ctrl-C as at a terminal, once both ranks are training
        lines.append(line)
        if re.search(r"\] \d+/40 ", line):
            two.send_signal(signal.SIGINT)
            break
    lines += two.stdout.readlines()
    output = "".join(lines)
    assert two.wait(timeout=120) == 130, output[-3000:]
    assert "training on 2 CPU processes over gloo through torchrun" in output
    losses = [float(v) for v in re.findall(r"\bloss (\S+)", output)]
    assert losses and all(math.isfinite(v) for v in losses), output[-2000:]
    written = list_checkpoints(run / "checkpoints")
    assert len(written) == 1, written                                         # rank 0 alone wrote it, once
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]   # no temp file left
    stopped_at = int(written[0].stem.split("_")[1])
    log = (run / "log.txt").read_text()
    assert log.count("bounding sphere: centre") == 1 and log.count("stopping after this step") == 1, log
    assert f"stopped at iteration {stopped_at} on request" in log and "final mesh:" not in log

    one = subprocess.run(_command(scene, run, "--resume"), env=dict(os.environ, OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "through torchrun" not in one.stderr
    log = (run / "log.txt").read_text()
    assert f"resumed from {written[0].name} at iteration {stopped_at}" in log and log.count("final mesh:") == 1
    assert list_checkpoints(run / "checkpoints")[-1].name == "ckpt_00000040.pt"
    assert len(PlyData.read(str(run / "meshes" / "final.ply"))["vertex"]) > 0
    model, _, iteration = load_trained_model(run, "cpu")
    assert iteration == 40 and all(torch.isfinite(p).all() for p in model.parameters())


def test_the_ranks_share_the_rays_and_draw_different_ones_after_a_resume():
    assert [Distributed(rank, 3).share(128) for rank in range(3)] == [43, 43, 42]
    assert Distributed().share(128) == 128
    state = torch.Generator().manual_seed(7).get_state()
    drawn = []
    for rank in range(3):
        generator = torch.Generator()
        generator.set_state(state)
        Distributed(rank, 3).split_generators(generator)
        drawn.append(torch.randint(1 << 30, (4,), generator=generator).tolist())
    assert drawn[0] == torch.randint(1 << 30, (4,), generator=torch.Generator().manual_seed(7)).tolist()
    assert len({tuple(d) for d in drawn}) == 3


@pytest.mark.parametrize("gpus, expected", [("2", "torch sees none; add --device cpu"), ("0", "give 1 or more")])
def test_gpus_torch_does_not_see_are_refused(tmp_path, capsys, gpus, expected):
    code = cli.main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--gpus", gpus])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
