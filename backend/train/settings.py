"""One run's resolved settings: the preset, what the memory plan chose and what the scene type implies.

Written into the run folder's config.json and every checkpoint, so ``extract`` and a resumed run rebuild the same
model without the dataset.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..model.color_field import ColorFieldConfig
from ..model.neural_surface import SurfaceModelConfig
from ..model.sdf_field import SdfFieldConfig
from ..render.renderer import SamplingConfig
from .checkpoint import CheckpointError
from .memory_plan import MemoryPlan
from .presets import LossWeights, OptimConfig, Preset
from .schedules import ScheduleConfig

BACKGROUNDS = ("model", "random", "black")
INDOOR_INIT_RADIUS = 0.95   # inside-out: free space fills the sphere, so cameras near its edge start in free space


@dataclass(frozen=True)
class TrainSettings:
    preset: str
    iterations: int
    stop_on_plateau: bool
    rays_per_iter: int
    model: SurfaceModelConfig
    sampling: SamplingConfig
    schedule: ScheduleConfig
    optim: OptimConfig
    losses: LossWeights
    occupancy_resolution: int
    occupancy_every: int
    validate_every: int
    validation_rays: int
    checkpoint_every: int
    checkpoint_every_s: float
    plateau_patience: int
    background: str            # "model": NeRF++; "random": masked photos over a random colour per ray; "black"
    use_mask: bool
    mixed_precision: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def with_encoding(self, encoding: str) -> "TrainSettings":
        """The same run computed with another hash-grid implementation (one table layout: see encoding_choice.py)."""
        return replace(self, model=replace(self.model, sdf=replace(self.model.sdf, encoding=encoding)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainSettings":
        values = dict(data)
        values["model"] = SurfaceModelConfig.from_json(data["model"])
        values["sampling"] = SamplingConfig(**data["sampling"])
        schedule = dict(data["schedule"])
        schedule["lr_steps"] = tuple(schedule["lr_steps"])
        values["schedule"] = ScheduleConfig(**schedule)
        optim = dict(data["optim"])
        optim["betas"] = tuple(optim["betas"])
        values["optim"] = OptimConfig(**optim)
        values["losses"] = LossWeights(**data["losses"])
        return cls(**values)

    @classmethod
    def from_checkpoint(cls, path: Path, state: dict[str, Any]) -> "TrainSettings":
        """A checkpoint's settings, or a CheckpointError naming the file (a field this version does not know)."""
        try:
            return cls.from_json(state["settings"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: its training settings do not read ({exc})") from exc


def _planned_sampling(preset: Preset, plan: MemoryPlan | None) -> SamplingConfig:
    """The preset's sampling with the background samples the memory plan left room for."""
    if plan is None or plan.background_samples is None:
        return preset.sampling
    return replace(preset.sampling, n_background=plan.background_samples)


def build_settings(preset: Preset, *, scene_type: str, use_alpha: bool, n_views: int, plan: MemoryPlan | None,
                   iterations: int | None = None, mixed_precision: bool = True,
                   encoding: str = "auto") -> TrainSettings:
    """Settings for a dataset: ``plan`` None keeps the preset's own table size and batch (CPU runs, tests);
    ``encoding`` is the hash-grid implementation, resolved for the device by ``choose_encoding``.

    Scene types follow Neuralangelo's generated configs: scenes start with half the hash levels and learn
    per-photo appearance codes; indoor scenes are inside-out. The NeRF++ background runs wherever pixels show
    things outside the sphere: outdoor scenes and object captures without masks (as Neuralangelo's DTU config);
    masked photos are trained over a random background colour instead, so opacity must match the mask.
    """
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be at least 1, not {iterations}")
    is_scene = scene_type != "object"
    background = "random" if use_alpha else ("black" if scene_type == "indoor" else "model")
    log2_t = plan.log2_hashmap_size if plan else preset.log2_hashmap_size
    features = plan.features_per_level if plan else preset.features_per_level
    appearance_dim = preset.appearance_dim if is_scene else 0
    sdf = SdfFieldConfig(n_levels=preset.n_levels, features_per_level=features, log2_hashmap_size=log2_t,
                         base_resolution=preset.base_resolution, max_resolution=preset.max_resolution,
                         hidden=preset.sdf_hidden, grid_in_feature=preset.grid_in_feature,
                         inside_out=scene_type == "indoor", encoding=encoding,
                         init_radius=INDOOR_INIT_RADIUS if scene_type == "indoor" else 0.5)
    color = ColorFieldConfig(feature_dim=sdf.feature_dim, hidden=preset.color_hidden, layers=preset.color_layers,
                             appearance_dim=appearance_dim)
    bg = None
    if background == "model":
        bg = preset.background_config(appearance_dim)
    model = SurfaceModelConfig(sdf, color, bg, appearance_images=n_views if appearance_dim else 0)
    init_levels = max(preset.schedule.init_levels, preset.n_levels // 2) if is_scene else preset.schedule.init_levels
    return TrainSettings(
        preset=preset.name, iterations=iterations or preset.iterations,
        stop_on_plateau=preset.stop_on_plateau and iterations is None,
        rays_per_iter=plan.rays_per_iter if plan else preset.rays_per_iter, model=model,
        sampling=_planned_sampling(preset, plan),
        schedule=replace(preset.schedule, init_levels=init_levels), optim=preset.optim, losses=preset.losses,
        occupancy_resolution=preset.occupancy_resolution, occupancy_every=preset.occupancy_every,
        validate_every=preset.validate_every, validation_rays=preset.validation_rays,
        checkpoint_every=preset.checkpoint_every, checkpoint_every_s=preset.checkpoint_every_s,
        plateau_patience=preset.plateau_patience, background=background, use_mask=use_alpha,
        mixed_precision=mixed_precision)
