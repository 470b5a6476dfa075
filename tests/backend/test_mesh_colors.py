"""Vertex colours: the colour field lands on the right vertices, each seen head-on along its SDF normal."""
from __future__ import annotations

import pytest
import torch

from carrara.backend.mesh.colors import rgb_to_bytes, surface_normals, vertex_colors
from carrara.backend.mesh.extract import extract_surface
from carrara.backend.mesh.fields import evaluate_color, sdf_normals


def ellipsoid(points: torch.Tensor) -> torch.Tensor:
    """Not a true distance, so its gradient normal differs from the radial direction, as a learned SDF would."""
    return (points / torch.tensor([0.7, 0.5, 0.4])).norm(dim=1) - 1.0


def position_color(points, normals, view_dirs):
    return torch.stack((0.5 + 0.5 * torch.sin(5 * points[:, 0]), 0.5 + 0.5 * points[:, 1],
                        (points[:, 2] + 0.5).clamp(0, 1)), 1)


def test_colours_land_on_their_vertices():
    mesh = extract_surface(ellipsoid, 48)
    normals = surface_normals(ellipsoid, mesh.vertices, mesh.faces, step=2.0 / 48, batch=997)
    rgba = vertex_colors(position_color, mesh.vertices, normals, batch=997)   # odd batch: several calls
    assert rgba.dtype == torch.uint8 and rgba.shape == (mesh.vertices.shape[0], 4)
    expected = position_color(mesh.vertices, None, None)
    assert (rgba[:, :3].float() / 255 - expected).abs().max() <= 0.5 / 255 + 1e-6
    assert (rgba[:, 3] == 255).all()


def test_normals_are_the_sdf_gradient_and_the_view_is_head_on():
    mesh = extract_surface(ellipsoid, 48)
    normals = surface_normals(ellipsoid, mesh.vertices, mesh.faces, step=1e-3, batch=4096)
    gradient = mesh.vertices / torch.tensor([0.7, 0.5, 0.4]) ** 2
    gradient = gradient / gradient.norm(dim=1, keepdim=True)
    assert (normals * gradient).sum(1).min() > 0.9999
    seen = {}

    def recording(points, n, view):
        seen["normals"], seen["view"] = n, view
        return torch.full((points.shape[0], 3), 0.5)
    evaluate_color(recording, mesh.vertices, normals, batch=1 << 20)
    assert torch.equal(seen["normals"], normals) and torch.equal(seen["view"], -normals)


def test_flat_field_falls_back_to_the_given_normals():
    points = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    flat_then_sloped = lambda p: torch.where(p[:, 0] < 0.25, torch.zeros(p.shape[0]), p[:, 0])
    fallback = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    normals = sdf_normals(flat_then_sloped, points, step=0.01, batch=64, fallback=fallback)
    assert torch.allclose(normals, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), atol=1e-5)


def test_colours_are_clamped_and_nan_is_black():
    rgb = evaluate_color(lambda p, n, v: torch.tensor([[1.7, -0.2, float("nan")]]).expand(p.shape[0], 3),
                         torch.zeros((5, 3)), torch.ones((5, 3)), batch=2)
    assert rgb_to_bytes(rgb)[0].tolist() == [255, 0, 0, 255]


def test_colour_field_with_wrong_output_is_refused():
    with pytest.raises(ValueError, match=r"color_fn must return \(M, 3\) RGB"):
        evaluate_color(lambda p, n, v: p[:, :2], torch.zeros((4, 3)), torch.ones((4, 3)), batch=8)
