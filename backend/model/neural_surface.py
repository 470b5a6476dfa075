"""The whole trainable scene: SDF, colour, optional background and appearance codes, and NeuS's sharpness.

It also hands mesh extraction the two callables it needs (``sdf_fn``, ``color_fn``; see ``backend/mesh/fields.py``),
evaluated at the coarse-to-fine stage the model was trained to, which travels in its state dict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from .background import Background, BackgroundConfig
from .color_field import ColorField, ColorFieldConfig
from .sdf_field import SdfField, SdfFieldConfig

# inv_s = exp(s_var) is kept below exp(MAX_S_VAR): beyond that the NeuS sigmoid is a step on fp32 round-off.
MAX_S_VAR = 12.0


@dataclass(frozen=True)
class SurfaceModelConfig:
    sdf: SdfFieldConfig
    color: ColorFieldConfig
    background: BackgroundConfig | None
    appearance_images: int = 0     # photos with a learned appearance code; 0 turns codes off
    init_s_var: float = 3.0        # inv_s = exp(3) ~ 20 at the start (Neuralangelo base.yaml)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SurfaceModelConfig":
        background = data.get("background")
        return cls(SdfFieldConfig(**data["sdf"]), ColorFieldConfig(**data["color"]),
                   BackgroundConfig.from_json(background) if background else None,
                   int(data.get("appearance_images", 0)), float(data.get("init_s_var", 3.0)))


class NeuralSurface(nn.Module):
    def __init__(self, config: SurfaceModelConfig):
        super().__init__()
        self.config = config
        self.sdf_field = SdfField(config.sdf)
        self.color_field = ColorField(config.color)
        self.background = Background(config.background) if config.background is not None else None
        self.appearance = None
        if config.appearance_images and config.color.appearance_dim:
            # Zero codes are the "average photo": what validation views and mesh colours use.
            self.appearance = nn.Embedding(config.appearance_images, config.color.appearance_dim)
            nn.init.zeros_(self.appearance.weight)
        self.s_var = nn.Parameter(torch.tensor(float(config.init_s_var)))
        self.active_levels = config.sdf.n_levels
        self.annealed_levels = config.sdf.n_levels

    # --- coarse-to-fine state, saved with the weights ----------------------------------------------------------
    def set_levels(self, active: int, annealed: int) -> None:
        """Hash levels fed to the MLP, and the level the gradient step follows (recipe §1.2, §1.5)."""
        self.active_levels, self.annealed_levels = int(active), int(annealed)

    @property
    def gradient_step(self) -> float:
        return self.config.sdf.gradient_step(self.annealed_levels)

    def get_extra_state(self) -> dict[str, int]:
        return {"active_levels": self.active_levels, "annealed_levels": self.annealed_levels}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.set_levels(state["active_levels"], state["annealed_levels"])

    # --- pieces the renderer uses ---------------------------------------------------------------------------
    def inv_s(self) -> torch.Tensor:
        return torch.exp(self.s_var.clamp(max=MAX_S_VAR))

    def appearance_codes(self, view_ids: torch.Tensor | None) -> torch.Tensor | None:
        """The codes of ``view_ids`` as a one-hot product with the table: the same values as the embedding's
        lookup, but a backward without the host round trip of CUDA's embedding backward for more than a few
        thousand indices (its segment count), which a captured training step (train/step_graph.py) cannot make."""
        if self.appearance is None or view_ids is None:
            return None
        table = self.appearance.weight
        one_hot = (view_ids[:, None] == torch.arange(table.shape[0], device=view_ids.device)).to(table.dtype)
        return one_hot @ table

    # --- what mesh extraction calls -------------------------------------------------------------------------
    def sdf_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """points (M, 3) in unit-sphere coordinates -> (M,) fp32 signed distance, without autograd."""
        @torch.no_grad()
        def sdf(points: torch.Tensor) -> torch.Tensor:
            return self.sdf_field.sdf(points.float(), self.active_levels)
        return sdf

    def color_fn(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """(points, unit normals, unit view directions) -> (M, 3) RGB in [0, 1], with the average appearance."""
        @torch.no_grad()
        def color(points: torch.Tensor, normals: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
            points = points.float()
            _, feature = self.sdf_field(points, self.active_levels)
            return self.color_field(points, view_dirs.float(), normals.float(), feature)
        return color
