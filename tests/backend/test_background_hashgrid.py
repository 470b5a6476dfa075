"""The hash-grid background (model/background.py): the contraction, what it learns, and how a run trains and
keeps it (the hash tables' optimiser group, checkpoints, settings written by earlier versions)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from carrara.backend.data.dataset import load_dataset
from carrara.backend.model.background import Background, BackgroundConfig, contract
from carrara.backend.train.checkpoint import load_checkpoint, save_checkpoint
from carrara.backend.train.presets import preset, preset_with
from carrara.backend.train.settings import TrainSettings, build_settings
from carrara.backend.train.trainer import Trainer
from carrara.shared.sphere import BoundingSphere
from engine_scenes import cached_scene


def test_contraction_maps_all_space_outside_the_sphere_into_the_shell_below_radius_two():
    directions = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, -0.5], [-0.3, 0.1, 0.9]]), dim=-1)
    for r, expected in ((1.0, 1.0), (2.0, 1.5), (4.0, 1.75), (1e6, 2.0 - 1e-6)):
        y = contract(directions * r)
        assert torch.allclose(y.norm(dim=-1), torch.full((2,), expected)), r
        assert torch.allclose(torch.nn.functional.normalize(y, dim=-1), directions)
    inside = torch.tensor([[0.2, -0.3, 0.1]])
    assert torch.equal(contract(inside), inside)


def _fit_far_pattern(config: BackgroundConfig, steps: int) -> float:
    """Mean squared error after ``steps`` of Adam on a wallpaper-like pattern 3 radii away, seen head-on."""
    torch.manual_seed(0)
    background = Background(config)
    generator = torch.Generator().manual_seed(1)
    directions = torch.nn.functional.normalize(torch.randn(4096, 3, generator=generator), dim=-1)
    theta, phi = torch.atan2(directions[:, 1], directions[:, 0]), torch.acos(directions[:, 2].clamp(-1, 1))
    stripes = torch.stack((torch.sin(24 * theta), torch.sin(16 * phi), torch.sin(24 * theta + 16 * phi)), -1)
    target = 0.5 + 0.4 * torch.sign(stripes)
    optimizer = torch.optim.Adam(background.parameters(), lr=1e-2, eps=1e-15)
    for _ in range(steps):
        _, rgb = background(3.0 * directions, -directions)
        loss = ((rgb - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def test_a_table_learns_a_detailed_far_background_much_sooner_than_nerfpp_fourier_features():
    """The reason the encoding exists: a wall behind the object is most of a handheld photo's pixels."""
    shared = dict(hidden=32, color_hidden=16)
    fourier = _fit_far_pattern(BackgroundConfig(**shared, layers=4, skip=2, frequencies=10), 150)
    table = _fit_far_pattern(BackgroundConfig(**shared, layers=1, skip=1, encoding="hashgrid", grid_levels=8,
                                              grid_log2_size=14, grid_max_resolution=512), 150)
    assert table < 0.5 * fourier, (table, fourier)


def test_an_unknown_background_encoding_names_the_choices():
    with pytest.raises(ValueError, match="background encoding must be one of .*'fourier', 'hashgrid'.*'nerf'"):
        BackgroundConfig(encoding="nerf")
    with pytest.raises(ValueError, match="background_encoding"):
        preset_with(preset("ci"), {"background_encoding": "nerf"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    scene = cached_scene(tmp_path_factory)
    return load_dataset(scene.folder, sphere=BoundingSphere(scene.sphere_center, scene.sphere_radius))


def _trainer(dataset, seed: int) -> Trainer:
    chosen = preset_with(dataclasses.replace(preset("ci"), rays_per_iter=32), {"background_encoding": "hashgrid"})
    # photos without their masks: the background network renders what lies beyond the sphere
    settings = build_settings(chosen, scene_type="outdoor", use_alpha=False, n_views=len(dataset.views), plan=None,
                              iterations=20)
    return Trainer(dataset, settings, device="cpu", image_budget=1 << 30, seed=seed)


def test_a_run_trains_the_background_table_with_the_hash_rate_and_resumes_it_exactly(dataset, tmp_path):
    first = _trainer(dataset, seed=0)
    try:
        table = first.model.background.encoding.table
        hash_group = first.optimizer.param_groups[0]
        assert any(p is table for p in hash_group["params"])
        assert hash_group["eps"] == first.settings.optim.eps_hash and hash_group["base_lr"] == first.settings.optim.lr_hash
        start = table.detach().clone()
        for _ in range(6):
            first.step()
        assert not torch.equal(table.detach(), start)
        saved = load_checkpoint(save_checkpoint(first.take_snapshot(), tmp_path, first.iteration))
        restored = TrainSettings.from_json(first.settings.to_json())
        assert restored == first.settings and restored.model.background.encoding == "hashgrid"
        second = _trainer(dataset, seed=5)
        try:
            second.load_state_dict(saved)
            assert torch.equal(second.model.background.encoding.table, first.model.background.encoding.table)
            assert first.step().loss == second.step().loss
        finally:
            second.close()
    finally:
        first.close()


def test_settings_written_before_the_choice_existed_load_as_nerfpp_fourier(dataset):
    settings = build_settings(preset("ci"), scene_type="outdoor", use_alpha=False, n_views=len(dataset.views),
                              plan=None)
    data = settings.to_json()
    for key in ("encoding", "grid_levels", "grid_features", "grid_log2_size", "grid_base_resolution",
                "grid_max_resolution", "implementation"):
        del data["model"]["background"][key]
    background = TrainSettings.from_json(data).model.background
    assert background.encoding == "fourier"
    # so an earlier run's weights load into the network these settings build
    shapes = {name: tensor.shape for name, tensor in Background(settings.model.background).state_dict().items()}
    assert {name: tensor.shape for name, tensor in Background(background).state_dict().items()} == shapes
