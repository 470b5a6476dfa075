"""Where along each ray the SDF is evaluated: stratified, occupancy-guided and NeuS up-sampling (recipe §1.8).

Every function keeps one fixed number of samples per ray, so batches stay dense tensors (no ragged packing).
"""
from __future__ import annotations

import torch

from .occupancy import OccupancyGrid

# Weight floor of empty cells for occupancy-guided sampling: a ray with no occupied cell is sampled uniformly.
EMPTY_WEIGHT = 1e-3


def stratified(near: torch.Tensor, far: torch.Tensor, count: int,
               generator: torch.Generator | None) -> torch.Tensor:
    """(R, count) sorted depths: one per equal bin of [near, far], jittered in its bin (bin centres without a generator)."""
    bins = torch.arange(count, device=near.device, dtype=near.dtype)
    if generator is None:
        u = (bins + 0.5).expand(near.shape[0], count)
    else:
        u = bins + torch.rand((near.shape[0], count), generator=generator, device=generator.device).to(near)
    return near[:, None] + (far - near)[:, None] * (u / count)


def sample_pdf(edges: torch.Tensor, weights: torch.Tensor, count: int,
               generator: torch.Generator | None) -> torch.Tensor:
    """(R, count) depths drawn from the piecewise-constant density ``weights`` (R, B) over ``edges`` (R, B + 1).

    Stratified quantiles (jittered with a generator, mid-quantiles without), so samples never clump by chance.
    """
    weights = weights + 1e-5
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat((torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)), -1)
    cdf[:, -1] = 1.0
    steps = torch.arange(count, device=edges.device, dtype=edges.dtype)
    if generator is None:
        u = ((steps + 0.5) / count).expand(edges.shape[0], count).contiguous()
    else:
        jitter = torch.rand((edges.shape[0], count), generator=generator, device=generator.device).to(edges)
        u = (steps + jitter) / count
    index = torch.searchsorted(cdf, u, right=True)
    below = (index - 1).clamp(0, edges.shape[1] - 1)
    above = index.clamp(0, edges.shape[1] - 1)
    cdf_below, cdf_above = cdf.gather(1, below), cdf.gather(1, above)
    edge_below, edge_above = edges.gather(1, below), edges.gather(1, above)
    span = cdf_above - cdf_below
    t = (u - cdf_below) / torch.where(span < 1e-5, torch.ones_like(span), span)
    return edge_below + t * (edge_above - edge_below)


def occupancy_guided(origins: torch.Tensor, directions: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                     grid: OccupancyGrid, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """(R, count) depths concentrated in the grid's occupied cells along each ray (marched at half a cell)."""
    steps = max(8, 2 * grid.resolution)   # a diameter is `resolution` cells: two lookups per cell
    edges = near[:, None] + (far - near)[:, None] * torch.linspace(0, 1, steps + 1, device=near.device)
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    occupied = grid.lookup(origins[:, None, :] + directions[:, None, :] * mids[..., None])
    weights = occupied.to(near.dtype) + EMPTY_WEIGHT
    return sample_pdf(edges, weights, count, generator)


def neus_upsample(depths: torch.Tensor, sdf: torch.Tensor, count: int, inv_s: float) -> torch.Tensor:
    """(R, count) new depths where NeuS's opacity, with a fixed sharpness ``inv_s``, says the surface is.

    NeuS's ``up_sample``: the slope between neighbouring samples (the smaller of this and the previous interval,
    clipped to <= 0 so only approaching the surface counts) estimates the SDF at interval ends, which gives an
    opacity per interval, and deterministic quantiles of the resulting weights place the new samples.
    """
    prev_sdf, next_sdf = sdf[:, :-1], sdf[:, 1:]
    prev_z, next_z = depths[:, :-1], depths[:, 1:]
    mid_sdf = 0.5 * (prev_sdf + next_sdf)
    dist = next_z - prev_z
    cos = (next_sdf - prev_sdf) / (dist + 1e-5)
    prev_cos = torch.cat((torch.zeros_like(cos[:, :1]), cos[:, :-1]), -1)
    cos = torch.minimum(cos, prev_cos).clamp(-1e3, 0.0)
    prev_cdf = torch.sigmoid((mid_sdf - cos * dist * 0.5) * inv_s)
    next_cdf = torch.sigmoid((mid_sdf + cos * dist * 0.5) * inv_s)
    alpha = (prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)
    transmittance = torch.cumprod(torch.cat((torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-7), -1), -1)[:, :-1]
    return sample_pdf(depths, alpha * transmittance, count, None)


def background_depths(far: torch.Tensor, count: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Depths beyond the sphere uniform in inverse distance (NeRF++): (R, count) depths and their inverse spacing.

    u runs from 1 (the sphere's exit) towards 0 (infinity); depth = far / u, and du is the interval in u that a
    density per unit of inverse distance is integrated over.
    """
    u_edges = torch.linspace(1.0, 0.0, count + 1, device=far.device, dtype=far.dtype)
    lower, upper = u_edges[1:], u_edges[:-1]
    if generator is None:
        t = torch.full((far.shape[0], count), 0.5, device=far.device, dtype=far.dtype)
    else:
        t = torch.rand((far.shape[0], count), generator=generator, device=generator.device).to(far)
    u = (lower + t * (upper - lower)).clamp_min(0.5 / count)
    return far[:, None] / u, (upper - lower).expand(far.shape[0], count)


def uniform_in_unit_ball(count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``count`` points uniform in the unit ball (radius ~ u^(1/3) along a uniform direction), for losses that
    must hold everywhere, not only where rays are rendered."""
    direction = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator, device=device), dim=1)
    radius = torch.rand(count, 1, generator=generator, device=device) ** (1.0 / 3.0)
    return direction * radius
