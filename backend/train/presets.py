"""Presets named for what an artist wants, one dataclass each; the defaults are written once, here.

Grid sizes and rays per iteration are the most a preset asks for (``memory_plan.py`` may lower them); iteration
counts aim at about a minute (``preview``) and ten (``standard``) on one H100; ``high`` stops on a validation
plateau; ``ci`` is for tests on a CPU. Where and why the presets leave Neuralangelo's recipe, with the
measurements: benchmarks/NOTES-presets.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Mapping

from ...shared.jobs import PRESETS
from ..model.background import BackgroundConfig
from ..render.renderer import SamplingConfig
from .schedules import ScheduleConfig


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3                  # MLPs and appearance codes (Neuralangelo)
    lr_hash: float = 1e-2             # hash tables (instant-ngp)
    lr_s: float = 3e-2                # NeuS sharpness s_var
    weight_decay: float = 1e-2        # AdamW, MLPs (Neuralangelo)
    weight_decay_hash: float = 1e-3   # lr_hash x this = Neuralangelo's lr x decay
    betas: tuple[float, float] = (0.9, 0.99)
    eps_hash: float = 1e-15           # tiny hash gradients still move their entries fully (instant-ngp)


@dataclass(frozen=True)
class LossWeights:
    rgb: float = 1.0
    eikonal: float = 0.1
    curvature: float = 5e-4           # before warm-up and per-level decay (schedules.py)
    mask: float = 0.1                 # BCE of opacity against alpha, when photos carry it
    # eikonal also at this many uniform points in the unit ball per ray: the rendered samples sit near the surface
    # (the occupancy grid skips the rest), so without them nothing keeps the inside a distance field
    eikonal_ball_points_per_ray: float = 2.0


@dataclass(frozen=True)
class Preset:
    name: str
    iterations: int
    rays_per_iter: int
    stop_on_plateau: bool = False
    # hash grid: the plan may lower log2_hashmap_size and features_per_level
    n_levels: int = 16
    base_resolution: int = 32
    max_resolution: int = 2048
    log2_hashmap_size: int = 22
    features_per_level: int = 8
    # networks
    sdf_hidden: int = 256
    grid_in_feature: bool = True       # hash features also feed the colour network directly
    color_hidden: int = 256
    color_layers: int = 4
    background_hidden: int = 256
    background_layers: int = 8
    background_skip: int = 4
    background_frequencies: int = 10
    background_color_hidden: int = 128
    appearance_dim: int = 8
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    occupancy_resolution: int = 128
    occupancy_every: int = 16
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    # bookkeeping
    validate_every: int = 500
    validation_rays: int = 4096
    checkpoint_every: int = 2000
    checkpoint_every_s: float = 300.0
    plateau_patience: int = 5          # validations without a gain of PLATEAU_MIN_GAIN_DB (high only)
    # the command line's final mesh (the server's job config chooses its own)
    cli_mesh_resolution: int = 512
    cli_texture_size: int = 2048

    def background_config(self, appearance_dim: int) -> BackgroundConfig:
        """The NeRF++ background network, one definition for the model and the memory plan."""
        return BackgroundConfig(hidden=self.background_hidden, layers=self.background_layers,
                                skip=self.background_skip, frequencies=self.background_frequencies,
                                color_hidden=self.background_color_hidden, appearance_dim=appearance_dim)


PLATEAU_MIN_GAIN_DB = 0.05


def presets_in_shared_order(presets: tuple[Preset, ...]) -> dict[str, Preset]:
    """The settings of each of shared/jobs.py's PRESETS, in its order: a preset missing on either side is an error."""
    by_name = {p.name: p for p in presets}
    if set(by_name) != set(PRESETS) or len(by_name) != len(presets):
        raise RuntimeError(f"the backend's presets {[p.name for p in presets]} must be shared/jobs.py's PRESETS "
                           f"{list(PRESETS)}, each once")
    return {name: by_name[name] for name in PRESETS}


PRESET_TABLE: dict[str, Preset] = presets_in_shared_order((
    Preset(
        name="ci", iterations=300, rays_per_iter=128,
        n_levels=4, base_resolution=16, max_resolution=64, log2_hashmap_size=19, features_per_level=2,
        sdf_hidden=64, color_hidden=64, color_layers=2,
        background_hidden=64, background_layers=4, background_skip=2, background_frequencies=6,
        background_color_hidden=32,
        sampling=SamplingConfig(n_uniform=8, n_guided=12, n_fine=6, fine_rounds=2, n_background=8),
        occupancy_resolution=32, occupancy_every=8,
        schedule=ScheduleConfig(warmup=0.02, level_step=0.05, init_levels=2, anneal_end=0.1),
        validate_every=100, validation_rays=1024, checkpoint_every=200, checkpoint_every_s=60.0,
        cli_mesh_resolution=64, cli_texture_size=128),
    Preset(
        name="preview", iterations=2000, rays_per_iter=2048, log2_hashmap_size=20, features_per_level=4,
        sampling=SamplingConfig(n_uniform=16, n_guided=32, n_fine=16, fine_rounds=2, n_background=16),
        occupancy_resolution=64, validate_every=250, checkpoint_every=1000),
    Preset(
        name="standard", iterations=11000, rays_per_iter=4096, log2_hashmap_size=21, features_per_level=8,
        sampling=SamplingConfig(n_uniform=16, n_guided=32, n_fine=16, fine_rounds=3, n_background=128),
        validate_every=1000, checkpoint_every=2500),
    Preset(
        name="high", iterations=100000, rays_per_iter=4096, stop_on_plateau=True,
        log2_hashmap_size=22, features_per_level=8,
        sampling=SamplingConfig(n_uniform=32, n_guided=48, n_fine=16, fine_rounds=4, n_background=128),
        schedule=ScheduleConfig(lr_steps=(0.6, 0.8)), validate_every=2000, checkpoint_every=5000),
))


def preset(name: str) -> Preset:
    try:
        return PRESET_TABLE[name]
    except KeyError:
        raise ValueError(f"preset must be one of {list(PRESET_TABLE)}, not {name!r}") from None


def preset_with(base: Preset, changes: Mapping[str, str]) -> Preset:
    """``base`` with fields set from text, dotted into nested settings (``losses.curvature=1e-3``,
    ``grid_in_feature=false``, ``schedule.lr_steps=0.6,0.8``): how a benchmark tries one choice of the recipe
    against the preset without a code change. Each value parses as the type of the value it replaces."""
    for path, text in changes.items():
        base = _replace_path(base, path.split("."), text, path)
    return base


def _replace_path(obj: Any, names: list[str], text: str, path: str) -> Any:
    known = [f.name for f in fields(obj)]
    if names[0] not in known:
        raise ValueError(f"{path}: {type(obj).__name__} has no field {names[0]!r}; it has {known}")
    current = getattr(obj, names[0])
    if len(names) > 1:
        if not is_dataclass(current):
            raise ValueError(f"{path}: {names[0]} is the value {current!r}, not a group of settings")
        return replace(obj, **{names[0]: _replace_path(current, names[1:], text, path)})
    if is_dataclass(current):
        raise ValueError(f"{path} is a group of settings; set one of its fields: {[f.name for f in fields(current)]}")
    return replace(obj, **{names[0]: _parse_like(current, text, path)})


def _parse_like(current: Any, text: str, path: str) -> Any:
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(current, tuple):
            return tuple(float(part) for part in text.split(",") if part.strip())
        return type(current)(text)
    except ValueError:
        raise ValueError(f"{path}={text!r}: expected a value like {current!r}") from None
