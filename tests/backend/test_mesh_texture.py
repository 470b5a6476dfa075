"""UV atlas and texture bake: the texture, read at a surface point's UV, gives the colour field at that point."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from carrara.backend.mesh.atlas import AtlasError, uv_atlas
from carrara.backend.mesh.cleanup import vertex_normals
from carrara.backend.mesh.extract import extract_surface
from carrara.backend.mesh.texture import bake_texture
from sdf_shapes import torus

SIZE = 256


def smooth_color(points, normals, view_dirs):
    return torch.stack((0.5 + 0.45 * torch.sin(4 * points[:, 0]), 0.5 + 0.45 * torch.cos(3 * points[:, 1]),
                        0.5 + 0.4 * normals[:, 2]), 1)


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample an (H, W, 3) image at Blender-convention UVs (v up), texel centres at half-integers."""
    h, w, _ = image.shape
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.fixture(scope="module")
def baked():
    mesh = extract_surface(torus, 40)
    vertices, faces = mesh.vertices, mesh.faces
    normals = vertex_normals(vertices, faces)
    uv = uv_atlas(vertices.numpy(), faces.numpy(), SIZE)
    png = bake_texture(vertices, faces, normals, torch.from_numpy(uv), smooth_color, SIZE, batch=5000)
    return vertices, faces, normals, uv, png


def test_atlas_gives_every_corner_a_uv_inside_the_image(baked):
    vertices, faces, _, uv, _ = baked
    assert uv.dtype == np.float32 and uv.shape == (faces.shape[0] * 3, 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    # The slivers xatlas leaves out of its charts sit at the UV one of their vertices has in a chart.
    corners = uv.reshape(-1, 3, 2)
    point_like = (corners == corners[:, :1]).all(axis=(1, 2))
    assert 0 < point_like.sum() < 0.05 * len(corners)
    charted = {(int(v), float(a), float(b)) for v, (a, b) in zip(faces[~point_like].reshape(-1).tolist(),
                                                                 corners[~point_like].reshape(-1, 2))}
    for face_vertices, (a, b) in zip(faces[point_like].tolist(), corners[point_like][:, 0]):
        assert any((v, float(a), float(b)) in charted for v in face_vertices)


def test_texture_read_at_surface_points_matches_the_colour_field(baked):
    vertices, faces, normals, uv, png = baked
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64) / 255.0
    assert image.shape == (SIZE, SIZE, 3)
    rng = np.random.default_rng(0)
    corner_points = vertices[faces].numpy().astype(np.float64)
    area = np.linalg.norm(np.cross(corner_points[:, 1] - corner_points[:, 0],
                                   corner_points[:, 2] - corner_points[:, 0]), axis=1)
    face = rng.choice(faces.shape[0], 4000, p=area / area.sum())     # uniform over the surface
    weights = rng.dirichlet((1.0, 1.0, 1.0), 4000)
    corner_points = vertices[faces[face]].numpy()
    points = (weights[:, :, None] * corner_points).sum(1)
    corner_normals = normals[faces[face]].numpy()
    point_normals = (weights[:, :, None] * corner_normals).sum(1)
    point_normals /= np.linalg.norm(point_normals, axis=1, keepdims=True)
    point_uv = (weights[:, :, None] * uv.reshape(-1, 3, 2)[face]).sum(1)
    expected = smooth_color(torch.from_numpy(points), torch.from_numpy(point_normals), None).numpy()
    error = np.abs(_bilinear(image, point_uv) - expected).max(1)
    # A texel spans about 0.01 of the scene and the field changes by up to 1.8 per unit; bilinear filtering
    # and 8-bit quantisation stay well under that, except within a texel of a chart border (the tail).
    assert error.mean() < 0.005
    assert np.quantile(error, 0.99) < 0.03


def test_empty_space_is_filled_so_borders_do_not_bleed_black(baked):
    *_, png = baked
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.reshape(-1, 3).sum(1).min() > 60   # the field's darkest colour is about (13, 13, 25)


def test_bad_texture_size_is_refused(baked):
    vertices, faces, normals, uv, _ = baked
    with pytest.raises(ValueError, match="texture_size"):
        bake_texture(vertices, faces, normals, torch.from_numpy(uv), smooth_color, 4, batch=100)


def test_atlas_of_an_empty_mesh_is_refused():
    with pytest.raises(ValueError, match="no faces"):
        uv_atlas(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), 64)


def test_an_atlas_out_of_time_or_failing_is_an_atlas_error(baked):
    """xatlas runs in a child process: one that hangs is killed at its time limit, one that fails is reported."""
    vertices, faces, _, _, _ = baked
    with pytest.raises(AtlasError, match="did not finish within"):
        uv_atlas(vertices.numpy(), faces.numpy(), SIZE, timeout_s=0.01)
    broken = faces.numpy().copy()
    broken[0, 0] = len(vertices) + 10          # an index past the last vertex: xatlas refuses the mesh
    with pytest.raises(AtlasError, match="xatlas failed"):
        uv_atlas(vertices.numpy(), broken, SIZE)
