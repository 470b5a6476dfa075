"""``carrara-backend train --gpus N`` as on a machine with several GPUs, here as N CPU processes over gloo
(``--device cpu``): the CLI starts torchrun itself, the ranks split each step's rays, one checkpoint is written,
and a run written by two ranks resumes on one."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plyfile import PlyData

from carrara.backend import cli
from carrara.backend.reconstruct import load_trained_model
from carrara.backend.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from carrara.backend.train.distributed import Distributed
from engine_scenes import SceneTruth, cached_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneTruth:
    return cached_scene(tmp_path_factory)


def _train(scene: SceneTruth, run: Path, iterations: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "carrara.backend", "train", str(scene.folder), "--out", str(run),
                           "--preset", "ci", "--iters", str(iterations), "--device", "cpu", *extra],
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)


def test_two_cpu_ranks_train_once_and_one_rank_resumes(scene, tmp_path):
    run = tmp_path / "run"
    two = _train(scene, run, 6, "--gpus", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "training on 2 CPU processes over gloo through torchrun" in two.stderr
    losses = [float(v) for v in re.findall(r"\bloss (\S+)", two.stderr)]
    assert losses and all(math.isfinite(v) for v in losses), two.stderr[-2000:]
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt_00000006.pt"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]   # no temp file left
    log = (run / "log.txt").read_text()
    assert log.count("bounding sphere: centre") == 1 and log.count("final mesh:") == 1, log
    assert len(PlyData.read(str(run / "meshes" / "final.ply"))["vertex"]) > 0

    # The same checkpoint, as if the two ranks had been stopped at 6 of a 10-iteration run.
    path = run / "checkpoints" / "ckpt_00000006.pt"
    state = load_checkpoint(path)
    state["settings"]["iterations"] = 10
    save_checkpoint(state, path.parent, 6)
    one = _train(scene, run, 10, "--resume")
    assert one.returncode == 0, one.stderr[-3000:]
    assert "through torchrun" not in one.stderr
    assert "resumed from ckpt_00000006.pt at iteration 6" in (run / "log.txt").read_text()
    assert list_checkpoints(run / "checkpoints")[-1].name == "ckpt_00000010.pt"
    model, _, iteration = load_trained_model(run, "cpu")
    assert iteration == 10 and all(torch.isfinite(p).all() for p in model.parameters())


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
