"""build_mesh: previews and final assets through one path, in world coordinates."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from carrara.backend.mesh.pipeline import build_mesh
from carrara.backend.mesh.topology import topology_report

CENTRE = np.array([2.0, -1.0, 0.5])
SCALE = 4.0


def scene(points: torch.Tensor) -> torch.Tensor:
    """A ball of radius 0.5 and a small floater."""
    ball = points.norm(dim=1) - 0.5
    floater = (points - torch.tensor([0.0, 0.0, 0.8])).norm(dim=1) - 0.06
    return torch.minimum(ball, floater)


def color(points, normals, view_dirs):
    return torch.stack((points[:, 0] * 0.5 + 0.5, points[:, 1] * 0.5 + 0.5, (normals[:, 2] + 1) / 2), 1)


def test_preview_is_in_world_coordinates_with_vertex_colours():
    mesh = build_mesh(scene, color, 48, device="cpu", to_world=(SCALE, CENTRE))
    radius = np.linalg.norm(mesh.vertices - CENTRE, axis=1)
    assert np.abs(radius - 0.5 * SCALE).max() < 0.01 * SCALE   # the floater is gone, the ball is in place
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert mesh.uv is None and mesh.texture_png is None
    normalised = torch.from_numpy((mesh.vertices - CENTRE) / SCALE).float()
    expected = color(normalised, normalised / normalised.norm(dim=1, keepdim=True), None).numpy()
    assert np.abs(mesh.vertex_colors[:, :2] / 255.0 - expected[:, :2]).max() < 0.005   # 8-bit rounding
    # The normal is a tetrahedral difference over half a cell, first-order accurate: about 1/50 here.
    assert np.abs(mesh.vertex_colors[:, 2] / 255.0 - expected[:, 2]).max() < 0.02
    assert topology_report(mesh.vertices, mesh.faces).closed_oriented_manifold


def test_floaters_stay_when_asked():
    kept = build_mesh(scene, None, 48, device="cpu", vertex_colors=False, remove_floaters=False)
    assert np.linalg.norm(kept.vertices, axis=1).max() > 0.8
    assert kept.vertex_colors is None


def test_final_asset_is_decimated_and_textured():
    steps: list[tuple[str, float, int]] = []
    mesh = build_mesh(scene, color, 64, device="cpu", to_world=(SCALE, CENTRE), decimate_faces=1500,
                      texture_size=128, on_step=lambda *step: steps.append(step))
    assert [name for name, _, _ in steps] == ["surface", "cleanup", "decimation", "colours", "atlas", "bake"]
    assert all(seconds >= 0 for _, seconds, _ in steps)
    faces = [count for _, _, count in steps]
    assert faces[0] >= faces[1] > 1500 >= faces[2] == faces[-1] == mesh.face_count
    assert mesh.uv.shape == (mesh.face_count * 3, 2) and mesh.vertex_colors.shape == (mesh.vertex_count, 4)
    assert Image.open(io.BytesIO(mesh.texture_png)).size == (128, 128)
    # Colours are evaluated at the decimated vertices, so they still match the field there.
    normalised = torch.from_numpy((mesh.vertices - CENTRE) / SCALE).float()
    expected = color(normalised, normalised / normalised.norm(dim=1, keepdim=True), None).numpy()
    assert np.abs(mesh.vertex_colors[:, :2] / 255.0 - expected[:, :2]).max() < 0.005
    assert np.abs(np.linalg.norm(mesh.vertices - CENTRE, axis=1) - 0.5 * SCALE).max() < 0.02 * SCALE


def test_empty_scene_gives_an_empty_mesh():
    mesh = build_mesh(lambda p: torch.ones(p.shape[0]), color, 32, device="cpu", texture_size=64)
    assert mesh.face_count == 0 and mesh.texture_png is None


@pytest.mark.parametrize("kwargs, message", [
    ({"to_world": (0.0, (0, 0, 0))}, "to_world"),
    ({"to_world": (1.0, (0, 0))}, "to_world"),
    ({"to_world": "far"}, "to_world"),
    ({"texture_size": 3}, "texture_size"),
    ({"decimate_faces": 2}, "decimate_faces"),
])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_mesh(scene, color, 24, device="cpu", **kwargs)


def test_colours_without_a_colour_field_are_refused():
    with pytest.raises(ValueError, match="need a color_fn"):
        build_mesh(scene, None, 24, device="cpu")


def test_cavities_go_when_asked():
    def hollow(points: torch.Tensor) -> torch.Tensor:
        r = points.norm(dim=1)
        return torch.maximum(r - 0.8, 0.3 - r)

    kept = build_mesh(hollow, None, 48, device="cpu", vertex_colors=False)
    solid = build_mesh(hollow, None, 48, device="cpu", vertex_colors=False, remove_cavities=True)
    assert np.linalg.norm(kept.vertices, axis=1).min() < 0.35 < 0.75 < np.linalg.norm(solid.vertices, axis=1).min()
