"""Checkpoints: atomic, a full disk keeps the previous one, resume is bit-exact, the NaN guard rolls back."""
from __future__ import annotations

import dataclasses
import math
import os

import pytest
import torch

from carrara.backend.data.dataset import load_dataset
from carrara.backend.train.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, load_latest,
                                              save_checkpoint)
from carrara.backend.train.presets import preset
from carrara.backend.train.settings import build_settings
from carrara.backend.train.trainer import MAX_ROLLBACKS, Trainer, TrainingDiverged
from carrara.shared.sphere import BoundingSphere
from engine_scenes import cached_scene


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    scene = cached_scene(tmp_path_factory)
    return load_dataset(scene.folder, sphere=BoundingSphere(scene.sphere_center, scene.sphere_radius))


def _trainer(dataset, seed: int = 0) -> Trainer:
    small = dataclasses.replace(preset("ci"), rays_per_iter=32, occupancy_every=4)
    settings = build_settings(small, scene_type="object", use_alpha=dataset.use_alpha, n_views=len(dataset.views),
                              plan=None, iterations=50)
    return Trainer(dataset, settings, device="cpu", image_budget=1 << 30, seed=seed)


def _assert_same_tensors(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                     and torch.equal(a.nan_to_num(), b.nan_to_num())), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), where


def test_checkpoints_are_atomic_and_the_newest_two_are_kept(tmp_path):
    for iteration in (10, 20, 30):
        save_checkpoint({"iteration": iteration, "w": torch.full((3,), float(iteration))}, tmp_path, iteration)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_00000020.pt", "ckpt_00000030.pt"]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    path, state = load_latest(tmp_path)
    assert path.name == "ckpt_00000030.pt" and torch.equal(state["w"], torch.full((3,), 30.0))


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    save_checkpoint({"iteration": 1}, tmp_path, 1)
    save_checkpoint({"iteration": 2}, tmp_path, 2)
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:40])
    path, state = load_latest(tmp_path)
    assert path.name == "ckpt_00000001.pt" and state["iteration"] == 1
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(newest)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to produce a real ENOSPC")
def test_a_full_disk_fails_clearly_and_keeps_the_previous_checkpoint(tmp_path):
    good = save_checkpoint({"iteration": 5, "w": torch.arange(1000.0)}, tmp_path, 5)
    before = good.read_bytes()
    with pytest.raises(CheckpointError, match=r"ckpt_00000006\.pt: could not be written \(the disk is full\); "
                                              r"the previous checkpoint ckpt_00000005\.pt is intact"):
        save_checkpoint({"iteration": 6, "w": torch.zeros(1 << 20)}, tmp_path, 6, temp_path="/dev/full")
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")   # the device was not unlinked
    assert list_checkpoints(tmp_path) == [good] and good.read_bytes() == before
    assert torch.equal(load_latest(tmp_path)[1]["w"], torch.arange(1000.0))


def test_resume_gives_the_same_state_and_the_same_next_step(dataset, tmp_path):
    first = _trainer(dataset)
    for _ in range(8):
        first.step()
    path = save_checkpoint(first.take_snapshot(), tmp_path, first.iteration)
    saved = load_checkpoint(path)
    after_first = first.step()                                 # iteration 8 also refreshes the occupancy grid

    second = _trainer(dataset, seed=123)                      # different initial weights and generators
    second.load_state_dict(saved)
    _assert_same_tensors(second.model.state_dict(), saved["model"], "model")
    _assert_same_tensors(second.optimizer.state_dict()["state"], saved["optimizer"]["state"], "adam")
    assert second.iteration == 8
    after_second = second.step()
    assert after_second.loss == after_first.loss
    _assert_same_tensors(second.model.state_dict(), first.model.state_dict(), "model after one more step")
    _assert_same_tensors(second.optimizer.state_dict()["state"], first.optimizer.state_dict()["state"], "adam after")
    assert torch.equal(second.occupancy.occupied, first.occupancy.occupied)


def test_resume_refuses_a_checkpoint_of_another_sphere(dataset, tmp_path):
    trainer = _trainer(dataset)
    state = trainer.take_snapshot()
    state["normalization"] = {"center": [0.0, 0.0, 0.0], "radius": 3.0}
    with pytest.raises(CheckpointError, match="trained inside the sphere"):
        _trainer(dataset).load_state_dict(state)


def test_nan_guard_rolls_back_and_lowers_the_learning_rate(dataset):
    trainer = _trainer(dataset)
    for _ in range(3):
        trainer.step()
    snapshot = trainer.take_snapshot()
    trainer.step()
    with torch.no_grad():
        trainer.model.sdf_field.encoding.table[::7] = float("nan")       # a real NaN in the weights
    stats = trainer.step()
    assert stats.rolled_back and trainer.iteration == 3 and trainer.lr_scale == 0.5
    _assert_same_tensors(trainer.model.state_dict(), snapshot["model"], "weights after rollback")
    stats = trainer.step()
    assert not stats.rolled_back and math.isfinite(stats.loss) and trainer.iteration == 4
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        0.5 * trainer.settings.optim.lr_hash * trainer.schedule.lr_factor(3))


def test_nan_guard_gives_up_after_repeated_divergence(dataset):
    trainer = _trainer(dataset)
    trainer.step()
    with pytest.raises(TrainingDiverged, match="last good checkpoint is intact"):
        for _ in range(MAX_ROLLBACKS + 1):
            with torch.no_grad():
                trainer.model.s_var.fill_(float("nan"))
            trainer.step()
