"""One batch of rays through the model: choose depths, evaluate the fields, composite colour and opacity.

Depths (no gradients): stratified ``n_uniform`` samples explore the whole chord, ``n_guided`` samples follow the
occupancy grid, and ``fine_rounds`` NeuS up-sampling rounds add ``n_fine`` each where the surface is (recipe
§1.8: 64 uniform + 4 x 16). Only the guided and fine depths are rendered: they and near/far bound the intervals,
whose midpoints get the SDF with its 4 taps, the colour, and NeuS opacities (midpoints as in NeuS, so the linear
estimate of the SDF at interval ends is exact for a plane). The exploration samples still steer up-sampling.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.rays import intersect_unit_sphere
from ..model.neural_surface import NeuralSurface
from ..profiling import step_range
from .occupancy import OccupancyGrid
from .sampling import background_depths, neus_upsample, occupancy_guided, stratified
from .volume import annealed_cos, composite, neus_alpha


@dataclass(frozen=True)
class SamplingConfig:
    n_uniform: int = 16
    n_guided: int = 32
    n_fine: int = 16
    fine_rounds: int = 2
    n_background: int = 32            # Neuralangelo's, uniform in inverse distance (presets may take more)
    upsample_inv_s: float = 64.0      # NeuS / Neuralangelo: 64 * 2^round

    @property
    def rendered_per_ray(self) -> int:
        """Intervals rendered per ray (each costs 1 + 4 SDF evaluations with gradients)."""
        return self.n_guided + self.n_fine * self.fine_rounds + 1

    @property
    def scanned_per_ray(self) -> int:
        """SDF evaluations per ray without gradients, for up-sampling."""
        return self.n_uniform + self.n_guided + self.n_fine * max(0, self.fine_rounds - 1)


@dataclass
class RenderResult:
    rgb: torch.Tensor            # (R, 3)
    opacity: torch.Tensor        # (R,) foreground opacity (inside the sphere)
    depth: torch.Tensor          # (R,) expected depth of the foreground
    gradient: torch.Tensor       # (R * S, 3) numerical SDF gradients at the rendered samples
    laplacian: torch.Tensor      # (R * S,)
    sample_mask: torch.Tensor    # (R * S,) bool: samples of rays that meet the sphere


class Renderer:
    def __init__(self, model: NeuralSurface, sampling: SamplingConfig, occupancy: OccupancyGrid | None = None,
                 mixed_precision: bool = False):
        self.model, self.sampling, self.occupancy = model, sampling, occupancy
        self.mixed_precision = mixed_precision

    def _autocast(self, device: torch.device):
        """bf16 for the colour and background MLPs only (never the SDF: see sdf_field.py). No cast cache, which a
        captured CUDA graph forbids (its weights are recomputed by weight norm on every call anyway)."""
        if self.mixed_precision and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
        return nullcontext()

    @torch.no_grad()
    def _depths(self, origins: torch.Tensor, directions: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        s = self.sampling
        sdf_field, levels = self.model.sdf_field, self.model.active_levels

        def sdf_at(depths: torch.Tensor) -> torch.Tensor:
            points = origins[:, None, :] + directions[:, None, :] * depths[..., None]
            return sdf_field.sdf(points.reshape(-1, 3), levels).view(depths.shape)

        if self.occupancy is not None:
            guided = occupancy_guided(origins, directions, near, far, self.occupancy, s.n_guided, generator)
        else:
            guided = stratified(near, far, s.n_guided, generator)
        scan, _ = torch.sort(torch.cat((stratified(near, far, s.n_uniform, generator), guided), -1), -1)
        scan_sdf = sdf_at(scan)
        fine = []
        for level in range(s.fine_rounds):
            new = neus_upsample(scan, scan_sdf, s.n_fine, s.upsample_inv_s * 2 ** level)
            fine.append(new)
            if level + 1 < s.fine_rounds:
                scan, order = torch.sort(torch.cat((scan, new), -1), -1)
                scan_sdf = torch.cat((scan_sdf, sdf_at(new)), -1).gather(1, order)
        depths, _ = torch.sort(torch.cat([guided] + fine, -1), -1)
        return depths

    def render(self, origins: torch.Tensor, directions: torch.Tensor, *, view_ids: torch.Tensor | None,
               cos_ratio: float | torch.Tensor, background_rgb: torch.Tensor | None,
               generator: torch.Generator | None) -> RenderResult:
        """Render unit-direction rays (R, 3) given in unit-sphere coordinates; ``generator`` None = deterministic."""
        model = self.model
        near, far, hit = intersect_unit_sphere(origins, directions)
        with step_range("sample_depths"):
            depths = self._depths(origins, directions, near, far, generator)
        edges = torch.cat((near[:, None], depths, far[:, None]), -1)
        mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
        dists = edges[:, 1:] - edges[:, :-1]
        n_rays, n_samples = mids.shape
        points = (origins[:, None, :] + directions[:, None, :] * mids[..., None]).reshape(-1, 3)
        dirs = directions[:, None, :].expand(n_rays, n_samples, 3).reshape(-1, 3)
        field = model.sdf_field.with_derivatives(points, model.gradient_step, model.active_levels)
        normals = F.normalize(field.gradient, dim=-1)
        codes = model.appearance_codes(view_ids)
        with self._autocast(points.device), step_range("color_mlp"):
            sample_codes = None if codes is None else codes[:, None, :].expand(n_rays, n_samples, -1).reshape(
                n_rays * n_samples, -1)
            colors = model.color_field(points, dirs, normals, field.feature, sample_codes).view(n_rays, n_samples, 3)
        with step_range("volume_rendering"):
            true_cos = (dirs * field.gradient).sum(-1)
            alpha = neus_alpha(field.sdf, annealed_cos(true_cos, cos_ratio), dists.reshape(-1), model.inv_s())
            alpha = alpha.view(n_rays, n_samples) * hit[:, None]
            weights, remaining = composite(alpha)
            rgb = (weights[..., None] * colors).sum(1)
            opacity = weights.sum(1)
            depth = (weights * mids).sum(1)
        if model.background is not None:
            with step_range("background"):
                rgb = rgb + remaining[:, None] * self._background(origins, directions, far, codes, generator)
        elif background_rgb is not None:
            rgb = rgb + (1.0 - opacity)[:, None] * background_rgb
        sample_mask = hit[:, None].expand(n_rays, n_samples).reshape(-1)
        return RenderResult(rgb, opacity, depth, field.gradient, field.laplacian, sample_mask)

    def _background(self, origins: torch.Tensor, directions: torch.Tensor, far: torch.Tensor,
                    codes: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        n = self.sampling.n_background
        depths, du = background_depths(far, n, generator)
        points = (origins[:, None, :] + directions[:, None, :] * depths[..., None]).reshape(-1, 3)
        dirs = directions[:, None, :].expand(-1, n, 3).reshape(-1, 3)
        with self._autocast(points.device):
            sample_codes = None if codes is None else codes[:, None, :].expand(-1, n, -1).reshape(-1, codes.shape[-1])
            density, colors = self.model.background(points, dirs, sample_codes)
        alpha = 1.0 - torch.exp(-density.view(-1, n) * du)
        weights, _ = composite(alpha)
        return (weights[..., None] * colors.view(-1, n, 3)).sum(1)

    @torch.no_grad()
    def render_batches(self, origins: torch.Tensor, directions: torch.Tensor, view_ids: torch.Tensor | None,
                       background_rgb: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Deterministic RGB (R, 3) of many rays in batches: validation views, benchmark renders."""
        out = []
        for start in range(0, origins.shape[0], batch):
            stop = start + batch
            bg = None if background_rgb is None else background_rgb[start:stop]
            ids = None if view_ids is None else view_ids[start:stop]
            out.append(self.render(origins[start:stop], directions[start:stop], view_ids=ids, cos_ratio=1.0,
                                   background_rgb=bg, generator=None).rgb)
        return torch.cat(out)
