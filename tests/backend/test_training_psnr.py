"""The trainer's two fixed-pixel PSNRs: held-out photos with the average appearance, training photos each with
its own code (what tells overfitting from underfitting in bench_quality.py)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from carrara.backend.data.dataset import load_dataset
from carrara.backend.train.presets import preset
from carrara.backend.train.settings import build_settings
from carrara.backend.train.trainer import Trainer
from carrara.shared.sphere import BoundingSphere
from engine_scenes import cached_scene


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    scene = cached_scene(tmp_path_factory)
    return load_dataset(scene.folder, sphere=BoundingSphere(scene.sphere_center, scene.sphere_radius))


def test_training_photos_are_rendered_with_their_own_codes_and_held_out_ones_with_none(dataset):
    small = dataclasses.replace(preset("ci"), rays_per_iter=64)
    # a scene's settings: every photo has an appearance code
    settings = build_settings(small, scene_type="outdoor", use_alpha=dataset.use_alpha, n_views=len(dataset.views),
                              plan=None, iterations=40)
    trainer = Trainer(dataset, settings, device="cpu", image_budget=1 << 30, seed=0)
    try:
        assert trainer.model.appearance is not None and dataset.validation_held_out
        untrained = trainer.training_view_psnr()
        for _ in range(40):
            trainer.step()
        trained, held_out = trainer.training_view_psnr(), trainer.validate()
        assert trained > untrained + 1.0
        assert trainer.training_view_psnr() == trained          # the same pixels each call
        with torch.no_grad():
            trainer.model.appearance.weight[dataset.validation] += 5.0
        assert trainer.training_view_psnr() == trained and trainer.validate() == held_out
        with torch.no_grad():
            trainer.model.appearance.weight[dataset.train] += 5.0
        assert abs(trainer.training_view_psnr() - trained) > 0.01 and trainer.validate() == held_out
    finally:
        trainer.close()
