"""Vertex colours from the colour field, each vertex seen head-on along its SDF normal (Neuralangelo's ``--textured``).

Normals come from the SDF's gradient, not the triangles: the colour network was trained with gradient normals,
and at preview resolutions the triangles' normals are visibly faceted.
"""
from __future__ import annotations

import torch

from .cleanup import vertex_normals
from .fields import ColorFn, SdfFn, evaluate_color, sdf_normals


def surface_normals(sdf_fn: SdfFn, vertices: torch.Tensor, faces: torch.Tensor, step: float,
                    batch: int) -> torch.Tensor:
    """Unit normals (V, 3) from the SDF gradient (difference half-width ``step``), the mesh's where it vanishes."""
    return sdf_normals(sdf_fn, vertices, step, batch, fallback=vertex_normals(vertices, faces))


def rgb_to_bytes(rgb: torch.Tensor) -> torch.Tensor:
    """0..1 float RGB (M, 3) to uint8 RGBA (M, 4), opaque."""
    rgba = torch.full((rgb.shape[0], 4), 255, dtype=torch.uint8, device=rgb.device)
    rgba[:, :3] = (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return rgba


def vertex_colors(color_fn: ColorFn, vertices: torch.Tensor, normals: torch.Tensor, batch: int) -> torch.Tensor:
    """uint8 RGBA (V, 4) colours of the vertices, each seen along -normal."""
    return rgb_to_bytes(evaluate_color(color_fn, vertices, normals, batch))
