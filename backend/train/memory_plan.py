"""Choose hash-table size, features per level and rays per iteration from the memory the GPU has free.

Neuralangelo's answer is a hand-made table in its README (8 GB: T=2^20, F=4; 12 GB: 2^21, 4; 16 GB: 2^21, 8;
24 GB: the defaults 2^22, 8), all at 1024 rays of 128 samples. Ours is computed from the configuration, so it
holds for any card, any preset and our sample counts, and it puts what is left to work as a photo cache.

Bytes counted (``estimate``):
- parameters: fp32 value + gradient + AdamW's two moments = 16 B each, hash table (its exact layout, from
  ``HashGridConfig.n_params``) and MLPs alike;
- activations per ray, kept for the backward pass: per rendered sample the SDF network's inputs, hash features and
  hidden layers for the sample and its 4 gradient taps (fp32), the geometry feature, the colour MLP (bf16 under
  mixed precision), NeuS terms; per background sample the background MLP; times BACKWARD_FACTOR for gradient
  buffers alive during the backward pass;
- the no-grad scan for up-sampling, transient (its peak counts only if larger than the training pass);
- RESERVE_BYTES for kernels' workspaces, plus MARGIN of the free memory for allocator fragmentation.
Background samples beyond the recipe's 32 a ray (``standard`` takes 128: +1.65 dB on the fox's held-out photos
at 5 minutes, benchmarks/NOTES-presets.md) are the first thing a smaller card gives up, before rays or table.
The benchmark (``benchmarks/bench_training.py``) records measured peaks next to these estimates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..model.hashgrid import HashGridConfig
from ..render.renderer import SamplingConfig
from .presets import Preset

BYTES_PER_PARAM = 16
BACKWARD_FACTOR = 1.6
RESERVE_BYTES = 768 << 20
MARGIN = 0.10
MIN_LOG2_HASHMAP = 15
MIN_RAYS = 256
FLOOR_RAYS = 1024
RECIPE_BACKGROUND_SAMPLES = 32
FP32, BF16 = 4, 2


class MemoryPlanError(RuntimeError):
    """Even the smallest plan does not fit; the message says how much is needed and what to do."""


@dataclass(frozen=True)
class MemoryPlan:
    log2_hashmap_size: int
    features_per_level: int
    rays_per_iter: int
    background_samples: int | None    # per ray; None where the run has no NeRF++ background
    budget_bytes: int                 # free memory minus reserve and margin
    estimated_bytes: int              # what training needs with this plan
    image_cache_bytes: int            # left over: decoded photos may live on the device up to this
    breakdown: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        gib = 2 ** 30
        background = "" if self.background_samples is None else \
            f", {self.background_samples} background samples a ray"
        return (f"hash table 2^{self.log2_hashmap_size} x {self.features_per_level} features, "
                f"{self.rays_per_iter} rays/iteration{background}: {self.estimated_bytes / gib:.2f} GiB of "
                f"{self.budget_bytes / gib:.2f} GiB usable, {self.image_cache_bytes / gib:.2f} GiB left for photos")


def _mlp_params(dims: list[int]) -> int:
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def model_params(preset: Preset, log2_hashmap_size: int, features_per_level: int, with_background: bool,
                 appearance_images: int | None = None) -> int:
    """Trainable parameters: the hash table's exact layout plus every MLP (weight norm adds one per row) and NeuS's
    s. ``appearance_images`` None counts the appearance inputs but not the codes (a plan before the scene is known).
    """
    grid = HashGridConfig(n_levels=preset.n_levels, features_per_level=features_per_level,
                          log2_hashmap_size=log2_hashmap_size, base_resolution=preset.base_resolution,
                          max_resolution=preset.max_resolution)
    h = preset.sdf_hidden
    sdf = _mlp_params([3 + preset.n_levels * features_per_level, h, 1]) + _mlp_params([h, h]) + 2 * h + 1
    appearance = preset.appearance_dim if appearance_images is None or appearance_images > 0 else 0
    codes = (appearance_images or 0) * appearance
    color_in = 3 + 16 + 3 + h + appearance + (preset.n_levels * features_per_level if preset.grid_in_feature else 0)
    color = _mlp_params([color_in] + [preset.color_hidden] * preset.color_layers + [3]) \
        + preset.color_hidden * preset.color_layers + 3
    background = 0
    if with_background:
        bg = preset.background_config(appearance)
        skip_inputs = bg.input_dim * bg.hidden if bg.skip < bg.layers else 0
        background = _mlp_params([bg.input_dim] + [bg.hidden] * bg.layers + [1]) + skip_inputs \
            + _mlp_params([bg.hidden + 16 + appearance] + [bg.color_hidden] * bg.color_layers + [3])
    return grid.n_params + sdf + color + background + codes + 1


def activation_bytes_per_ray(preset: Preset, features_per_level: int, sampling: SamplingConfig,
                             with_background: bool, mixed_precision: bool) -> tuple[int, int]:
    """(bytes kept for backward per ray, transient bytes per ray of the no-grad scan)."""
    lf, h = preset.n_levels * features_per_level, preset.sdf_hidden
    colour_bytes = BF16 if mixed_precision else FP32
    per_query = FP32 * (3 + 3 + lf + (3 + lf) + 2 * h + 1)          # x, x01, features, MLP input, pre/post, sdf
    colour_in = 3 + 16 + 3 + h + preset.appearance_dim + (lf if preset.grid_in_feature else 0)
    per_sample = 5 * per_query + FP32 * (2 * h + 24) \
        + colour_bytes * (colour_in + 2 * preset.color_layers * preset.color_hidden + 3)
    per_ray = sampling.rendered_per_ray * per_sample
    if with_background:
        bg = preset.background_config(preset.appearance_dim)
        per_bg = colour_bytes * (bg.input_dim * 2 + 2 * bg.layers * bg.hidden
                                 + 2 * bg.color_layers * bg.color_hidden + 16) + FP32 * 12
        per_ray += sampling.n_background * per_bg
    scan = (sampling.n_uniform + sampling.n_guided) * FP32 * (6 + lf + (3 + lf) + 2 * h)
    return int(per_ray * BACKWARD_FACTOR), int(scan)


def estimate(preset: Preset, log2_hashmap_size: int, features_per_level: int, rays: int, background_samples: int,
             *, with_background: bool, mixed_precision: bool) -> dict[str, int]:
    params = model_params(preset, log2_hashmap_size, features_per_level, with_background)
    sampling = replace(preset.sampling, n_background=background_samples)
    per_ray, scan_per_ray = activation_bytes_per_ray(preset, features_per_level, sampling, with_background,
                                                     mixed_precision)
    return {"parameters_and_optimizer": params * BYTES_PER_PARAM,
            "activations": max(per_ray, scan_per_ray) * rays,
            "occupancy_grid": preset.occupancy_resolution ** 3 * 2}


def plan_memory(preset: Preset, free_bytes: int, *, with_background: bool = False, mixed_precision: bool = True,
                device_name: str = "the GPU") -> MemoryPlan:
    """The best plan for ``preset`` within ``free_bytes``; MemoryPlanError when even the smallest does not fit.

    Preference: at least ``FLOOR_RAYS`` rays (Neuralangelo's batch; fewer makes gradients noisy), then the largest
    table capacity log2(T * F), then more rays, then more background samples (halved down to the recipe's), then
    larger T (fewer hash collisions at equal capacity).
    """
    budget = int(free_bytes * (1.0 - MARGIN)) - RESERVE_BYTES
    features = [f for f in (8, 4, 2) if f <= preset.features_per_level] or [preset.features_per_level]
    rays_options, rays = [], preset.rays_per_iter
    while rays >= min(MIN_RAYS, preset.rays_per_iter):
        rays_options.append(rays)
        rays //= 2
    background_options = [preset.sampling.n_background]
    while with_background and background_options[-1] // 2 >= RECIPE_BACKGROUND_SAMPLES:
        background_options.append(background_options[-1] // 2)
    best, best_key = None, None
    for log2_t in range(preset.log2_hashmap_size, MIN_LOG2_HASHMAP - 1, -1):
        for f in features:
            for rays in rays_options:
                for samples in background_options:
                    parts = estimate(preset, log2_t, f, rays, samples, with_background=with_background,
                                     mixed_precision=mixed_precision)
                    total = sum(parts.values())
                    if total > budget:
                        continue
                    key = (rays >= min(FLOOR_RAYS, preset.rays_per_iter), log2_t + f.bit_length() - 1, rays,
                           samples, log2_t)
                    if best_key is None or key > best_key:
                        best, best_key = (log2_t, f, rays, samples, parts, total), key
    if best is None:
        smallest = estimate(preset, MIN_LOG2_HASHMAP, features[-1], rays_options[-1], background_options[-1],
                            with_background=with_background, mixed_precision=mixed_precision)
        need = sum(smallest.values()) + RESERVE_BYTES
        raise MemoryPlanError(
            f"preset {preset.name!r} cannot fit {device_name}: its smallest plan (hash table 2^{MIN_LOG2_HASHMAP} x "
            f"{features[-1]}, {rays_options[-1]} rays) needs about {need / 2**30:.2f} GiB, but only "
            f"{free_bytes / 2**30:.2f} GiB is free; close other programs using the GPU, or train on another device "
            f"(device 'cpu' is slow but always fits)")
    log2_t, f, rays, samples, parts, total = best
    return MemoryPlan(log2_t, f, rays, samples if with_background else None, budget, total, max(0, budget - total),
                      parts)


def fixed_plan(preset: Preset, free_bytes: int, log2_hashmap_size: int, features_per_level: int, rays: int,
               background_samples: int, *, with_background: bool = False, mixed_precision: bool = True,
               device_name: str = "the GPU") -> MemoryPlan:
    """The plan a resumed run already has (its table and sampling cannot change): does it still fit, and what is
    left?"""
    budget = int(free_bytes * (1.0 - MARGIN)) - RESERVE_BYTES
    parts = estimate(preset, log2_hashmap_size, features_per_level, rays, background_samples,
                     with_background=with_background, mixed_precision=mixed_precision)
    total = sum(parts.values())
    if total > budget:
        raise MemoryPlanError(
            f"this run (hash table 2^{log2_hashmap_size} x {features_per_level}, {rays} rays) needs about "
            f"{(total + RESERVE_BYTES) / 2**30:.2f} GiB on {device_name}, but only {free_bytes / 2**30:.2f} GiB is "
            f"free; close other programs using the GPU, or resume on the GPU it started on")
    return MemoryPlan(log2_hashmap_size, features_per_level, rays, background_samples if with_background else None,
                      budget, total, budget - total, parts)
