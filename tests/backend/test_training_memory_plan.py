"""The memory plan for 8, 12, 24 and 80 GB cards, computed without a GPU from the free-memory figure."""
from __future__ import annotations

import pytest
import torch

from carrara.backend.model.neural_surface import NeuralSurface
from carrara.backend.train.memory_plan import (RECIPE_BACKGROUND_SAMPLES, MemoryPlanError, fixed_plan, model_params,
                                               plan_memory)
from carrara.backend.train.presets import PRESET_TABLE, preset
from carrara.backend.train.settings import build_settings

GIB = 2 ** 30
CONTEXT = int(0.6 * GIB)           # what the CUDA context and the desktop take before we ask
# Neuralangelo's README table (recipe §1.9): log2 T, F at 1024 rays x 128 samples.
NEURALANGELO = {8: (20, 4), 12: (21, 4), 24: (22, 8)}


@pytest.mark.parametrize("card_gb", [8, 12, 24, 80])
def test_high_preset_fits_every_card_and_beats_neuralangelos_table(card_gb):
    free = card_gb * GIB - CONTEXT
    plan = plan_memory(preset("high"), free, with_background=True)
    assert plan.estimated_bytes <= plan.budget_bytes < free
    assert plan.rays_per_iter >= 1024
    capacity = plan.log2_hashmap_size + plan.features_per_level.bit_length() - 1       # log2(T * F)
    if card_gb in (8, 12):
        theirs = NEURALANGELO[card_gb]
        assert capacity > theirs[0] + theirs[1].bit_length() - 1
    elif card_gb == 24:
        assert (plan.log2_hashmap_size, plan.features_per_level) == NEURALANGELO[24]
        assert plan.rays_per_iter > 1024
    else:
        high = preset("high")
        assert (plan.log2_hashmap_size, plan.features_per_level, plan.rays_per_iter) == \
            (high.log2_hashmap_size, high.features_per_level, high.rays_per_iter)
        assert plan.image_cache_bytes > 40 * GIB        # the rest caches photos on the GPU


@pytest.mark.parametrize("name", ["preview", "standard", "high"])
def test_more_memory_never_gives_a_smaller_plan(name):
    previous = None
    for card_gb in (8, 12, 16, 24, 40, 80):
        plan = plan_memory(preset(name), card_gb * GIB - CONTEXT, with_background=True)
        key = (plan.log2_hashmap_size + plan.features_per_level.bit_length(), plan.rays_per_iter)
        if previous is not None:
            assert key[0] >= previous[0] and (key[0] > previous[0] or key[1] >= previous[1])
        previous = key


def test_a_card_too_small_gets_a_clear_error_before_training():
    with pytest.raises(MemoryPlanError, match=r"preset 'high' cannot fit my card: .* GiB, but only 0\.50 GiB is free"):
        plan_memory(preset("high"), GIB // 2, with_background=True, device_name="my card")


def test_a_resumed_run_keeps_its_table_and_is_told_when_it_no_longer_fits():
    plan = fixed_plan(preset("standard"), 24 * GIB, 21, 8, 4096, 32, with_background=True)
    assert (plan.log2_hashmap_size, plan.features_per_level, plan.rays_per_iter, plan.background_samples) == \
        (21, 8, 4096, 32)
    with pytest.raises(MemoryPlanError, match="resume on the GPU it started on"):
        fixed_plan(preset("standard"), 4 * GIB, 21, 8, 4096, 32)


def test_a_smaller_card_gives_up_background_samples_before_rays_and_never_below_the_recipes():
    """Background samples beyond the recipe's 32 are worth held-out PSNR on unmasked captures, but less than rays
    and table: a card too small for all three halves them first (24 GB: 64 at 4,096 rays, not 128 at 2,048)."""
    standard = preset("standard")
    assert standard.sampling.n_background > RECIPE_BACKGROUND_SAMPLES
    large = plan_memory(standard, 80 * GIB - CONTEXT, with_background=True)
    assert (large.rays_per_iter, large.background_samples) == (standard.rays_per_iter,
                                                               standard.sampling.n_background)
    mid = plan_memory(standard, 24 * GIB - CONTEXT, with_background=True)
    assert mid.rays_per_iter == standard.rays_per_iter
    assert RECIPE_BACKGROUND_SAMPLES <= mid.background_samples < standard.sampling.n_background
    settings = build_settings(standard, scene_type="outdoor", use_alpha=False, n_views=10, plan=mid)
    assert settings.sampling.n_background == mid.background_samples
    for card_gb in (8, 12, 16):
        plan = plan_memory(standard, card_gb * GIB - CONTEXT, with_background=True)
        assert plan.background_samples >= RECIPE_BACKGROUND_SAMPLES
    masked = plan_memory(standard, 24 * GIB - CONTEXT, with_background=False)
    assert masked.background_samples is None and "background" not in masked.describe()
    assert "64 background samples a ray" in mid.describe()


@pytest.mark.parametrize("scene_type, use_alpha", [("object", True), ("outdoor", False)])
def test_parameter_count_is_the_models_own(scene_type, use_alpha):
    """The plan counts exactly the parameters the model has (hash layout, MLPs, weight norm, background)."""
    base = PRESET_TABLE["ci"]
    settings = build_settings(base, scene_type=scene_type, use_alpha=use_alpha, n_views=10, plan=None)
    with torch.device("meta"):
        model = NeuralSurface(settings.model)
    counted = sum(p.numel() for p in model.parameters())
    codes = 10 if scene_type != "object" else 0
    assert counted == model_params(base, base.log2_hashmap_size, base.features_per_level,
                                   with_background=not use_alpha, appearance_images=codes)
