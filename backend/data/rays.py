"""Rays from posed pinhole cameras and their clip to the unit sphere.

Conventions (``docs/architecture.md``): camera->world matrices with OpenCV axes (+x right, +y down, +z forward),
pixel centres at +0.5, so the ray through pixel (col, row) passes through image point (col + 0.5, row + 0.5).
Directions are unit length, so distances along a ray are distances in unit-sphere coordinates.
"""
from __future__ import annotations

import torch


def camera_rays(c2w: torch.Tensor, intrinsics: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through image points.

    c2w (N, 3, 4) or (N, 4, 4) per ray, intrinsics (N, 4) as fx, fy, cx, cy, pixels (N, 2) as (x, y) image
    coordinates (a pixel's centre is col + 0.5, row + 0.5). Returns origins (N, 3) and unit directions (N, 3).
    """
    fx, fy, cx, cy = intrinsics.unbind(-1)
    x = (pixels[:, 0] - cx) / fx
    y = (pixels[:, 1] - cy) / fy
    d_cam = torch.stack((x, y, torch.ones_like(x)), -1)
    rot = c2w[:, :3, :3]
    directions = torch.einsum("nij,nj->ni", rot, d_cam)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return c2w[:, :3, 3].clone(), directions


def intersect_unit_sphere(origins: torch.Tensor, directions: torch.Tensor,
                          min_length: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry and exit distances of unit-direction rays through the unit sphere, and which rays meet it.

    ``near`` is clamped to >= 0 so a camera inside the sphere (indoor scenes) starts at its own centre. A ray that
    misses (or only touches, or has the sphere behind it) gets ``hit = False`` and the dummy interval [1, 1.2],
    which callers must mask out: Neuralangelo's trick to keep every tensor the same shape.
    """
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - 1.0
    disc = b * b - c
    root = torch.sqrt(disc.clamp_min(0.0))
    near = (-b - root).clamp_min(0.0)
    far = -b + root
    hit = (disc > 0) & (far - near > min_length)
    near = torch.where(hit, near, torch.ones_like(near))
    far = torch.where(hit, far, torch.full_like(far, 1.2))
    return near, far, hit
