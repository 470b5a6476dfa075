"""Schedules: Neuralangelo's formulas (recipe §1.2, §1.6, §1.9) at its own 500k-iteration scale, and presets."""
from __future__ import annotations

from pathlib import Path

import pytest

from carrara.backend.train.checkpoint import CheckpointError
from carrara.backend.train.presets import PRESET_TABLE, presets_in_shared_order
from carrara.backend.train.schedules import Schedule, ScheduleConfig, per_level_scale
from carrara.backend.train.settings import TrainSettings, build_settings
from carrara.shared.jobs import PRESETS

RECIPE = Schedule(ScheduleConfig.neuralangelo(init_levels=4), 500_000, 16, per_level_scale(32, 2048, 16), 5e-4)


def test_coarse_to_fine_matches_neuralangelo():
    assert RECIPE.warmup_iters == 5000 and RECIPE.level_step_iters == 5000
    assert [RECIPE.active_levels(i) for i in (0, 9_999, 15_000, 30_000, 84_999)] == [4, 4, 4, 5, 15]
    assert RECIPE.active_levels(85_000) == 16 and RECIPE.all_levels_at() == 85_000
    assert RECIPE.annealed_levels(0) == 1


def test_curvature_weight_warms_up_then_decays_by_the_per_level_scale():
    assert RECIPE.curvature(0) == 0.0 and RECIPE.curvature(2500) == pytest.approx(2.5e-4)
    assert RECIPE.curvature(5000) == pytest.approx(5e-4)
    assert RECIPE.curvature(100_000) == pytest.approx(5e-4 / 64, rel=1e-6)     # 1.3195^15 = 64


def test_learning_rate_warms_up_and_steps_down():
    assert RECIPE.lr_factor(0) == pytest.approx(1 / 5000) and RECIPE.lr_factor(4999) == 1.0
    assert RECIPE.lr_factor(299_999) == 1.0 and RECIPE.lr_factor(300_000) == pytest.approx(0.1)
    assert RECIPE.lr_factor(400_000) == pytest.approx(0.01)
    assert RECIPE.cos_ratio(25_000) == pytest.approx(0.5) and RECIPE.cos_ratio(60_000) == 1.0


def test_every_preset_of_the_protocol_exists_and_round_trips_through_json():
    assert tuple(PRESET_TABLE) == PRESETS
    for preset in PRESET_TABLE.values():
        for scene_type, alpha in (("object", True), ("indoor", False), ("outdoor", False)):
            settings = build_settings(preset, scene_type=scene_type, use_alpha=alpha, n_views=12, plan=None)
            assert TrainSettings.from_json(settings.to_json()) == settings


def test_a_run_saved_while_the_hash_grid_background_existed_loads_or_is_refused_by_name():
    """Commits a551634-4baf796 wrote a hash-grid background's fields into every run's background settings."""
    settings = build_settings(PRESET_TABLE["standard"], scene_type="outdoor", use_alpha=False, n_views=12, plan=None)
    saved = settings.to_json()
    saved["model"]["background"].update(encoding="fourier", grid_levels=16, grid_features=2, grid_log2_size=19,
                                        grid_base_resolution=16, grid_max_resolution=2048, implementation="triton")
    assert TrainSettings.from_json(saved) == settings
    saved["model"]["background"]["encoding"] = "hashgrid"
    with pytest.raises(CheckpointError, match="ckpt_000100.pt: .*model.background.encoding is 'hashgrid'.*"
                                              "start the run again"):
        TrainSettings.from_checkpoint(Path("run/checkpoints/ckpt_000100.pt"), {"settings": saved})


def test_a_backend_preset_missing_from_shared_or_written_twice_is_refused():
    defined = tuple(PRESET_TABLE.values())
    assert list(presets_in_shared_order(defined[::-1])) == list(PRESETS)   # shared/jobs.py's order, whatever ours
    for wrong in (defined[1:], defined + (defined[0],)):
        with pytest.raises(RuntimeError, match="PRESETS"):
            presets_in_shared_order(wrong)


def test_scene_types_follow_neuralangelos_generated_configs():
    base = PRESET_TABLE["standard"]
    obj = build_settings(base, scene_type="object", use_alpha=False, n_views=5, plan=None)
    indoor = build_settings(base, scene_type="indoor", use_alpha=False, n_views=5, plan=None)
    outdoor = build_settings(base, scene_type="outdoor", use_alpha=False, n_views=5, plan=None)
    masked = build_settings(base, scene_type="object", use_alpha=True, n_views=5, plan=None)
    assert obj.schedule.init_levels == 4 and indoor.schedule.init_levels == 8
    assert indoor.model.sdf.inside_out and not outdoor.model.sdf.inside_out
    assert indoor.model.background is None and outdoor.model.background is not None
    assert outdoor.model.appearance_images == 5 and obj.model.appearance_images == 0
    assert masked.background == "random" and masked.model.background is None and masked.use_mask
    assert build_settings(PRESET_TABLE["high"], scene_type="object", use_alpha=True, n_views=5,
                          plan=None).stop_on_plateau
    assert not build_settings(PRESET_TABLE["high"], scene_type="object", use_alpha=True, n_views=5, plan=None,
                              iterations=1000).stop_on_plateau
