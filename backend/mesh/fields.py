"""The two fields the engine hands to mesh extraction, and how we call them: in batches, without autograd.

Both take points in normalised coordinates (the bounding sphere is the unit sphere):

- ``sdf_fn(points (M, 3)) -> (M,)``: signed distance, negative inside the object;
- ``color_fn(points (M, 3), normals (M, 3), view_dirs (M, 3)) -> (M, 3)``: RGB in 0..1, encoded like the input
  images (sRGB), as the colour network renders a surface point seen along ``view_dirs`` (unit, pointing from
  the camera towards the point).

Keeping extraction behind these two callables makes it testable on analytic fields and independent of the model.
"""
from __future__ import annotations

from typing import Callable

import torch

SdfFn = Callable[[torch.Tensor], torch.Tensor]
ColorFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# What NaN from a diverged network reads as: far outside (a sphere radius away), so meshes stay valid.
_NAN_SDF = 1.0


def default_batch(device: torch.device) -> int:
    """Points per field call: large on a GPU for throughput, small on the CPU to keep memory low."""
    return 1 << 21 if device.type == "cuda" else 1 << 16


@torch.no_grad()
def evaluate_sdf(sdf_fn: SdfFn, points: torch.Tensor, batch: int) -> torch.Tensor:
    """SDF values (M,) float32 at ``points`` (M, 3), ``batch`` points per call; NaN reads as outside."""
    values = torch.empty(points.shape[0], dtype=torch.float32, device=points.device)
    for start in range(0, points.shape[0], batch):
        chunk = points[start:start + batch]
        out = sdf_fn(chunk)
        if not isinstance(out, torch.Tensor) or out.numel() != chunk.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"sdf_fn must return one value per point: got {shape} for {chunk.shape[0]} points")
        values[start:start + chunk.shape[0]] = out.reshape(-1).to(torch.float32)
    return torch.nan_to_num_(values, nan=_NAN_SDF)


@torch.no_grad()
def evaluate_color(color_fn: ColorFn, points: torch.Tensor, normals: torch.Tensor, batch: int) -> torch.Tensor:
    """RGB (M, 3) float32 in [0, 1], each point seen head-on along its normal (view direction = -normal).

    This is how Neuralangelo colours its meshes (``--textured``): the colour a camera looking straight at the
    surface would see, so view-dependent effects do not bake in from one arbitrary direction.
    """
    rgb = torch.empty((points.shape[0], 3), dtype=torch.float32, device=points.device)
    for start in range(0, points.shape[0], batch):
        p, n = points[start:start + batch], normals[start:start + batch]
        out = color_fn(p, n, -n)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (p.shape[0], 3):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"color_fn must return (M, 3) RGB: got {shape} for {p.shape[0]} points")
        rgb[start:start + p.shape[0]] = out.to(torch.float32)
    return torch.nan_to_num_(rgb, nan=0.0).clamp_(0.0, 1.0)


# The four taps of a regular tetrahedron: the cheapest symmetric finite-difference gradient (4 evaluations),
# the same stencil Neuralangelo trains its normals with.
_TETRAHEDRON = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])


@torch.no_grad()
def sdf_normals(sdf_fn: SdfFn, points: torch.Tensor, step: float, batch: int,
                fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Unit outward normals (M, 3) from the SDF's gradient by a tetrahedral difference of half-width ``step``.

    Where the gradient vanishes (a flat spot of a learned field) the ``fallback`` normals (e.g. the mesh's) are
    used, else +z, so a colour network never sees a zero normal.
    """
    taps = _TETRAHEDRON.to(points.device)
    normals = torch.empty_like(points)
    for start in range(0, points.shape[0], max(1, batch // 4)):
        p = points[start:start + max(1, batch // 4)]
        values = evaluate_sdf(sdf_fn, (p[:, None, :] + step * taps).reshape(-1, 3), batch).view(-1, 4)
        normals[start:start + p.shape[0]] = values @ taps
    length = normals.norm(dim=1, keepdim=True)
    good = (length > 1e-12).squeeze(1) & torch.isfinite(length).squeeze(1)
    normals[good] /= length[good]
    if not bool(good.all()):
        spare = fallback[~good] if fallback is not None else torch.tensor([0.0, 0.0, 1.0], device=points.device)
        normals[~good] = spare
    return normals
