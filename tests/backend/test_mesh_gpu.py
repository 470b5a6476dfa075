"""The CUDA path gives the CPU path's mesh (GPU machine only; skipped elsewhere)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from carrara.backend.mesh.extract import extract_surface
from carrara.backend.mesh.pipeline import build_mesh
from carrara.backend.mesh.topology import topology_report
from sdf_shapes import torus as _torus

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def torus(points: torch.Tensor) -> torch.Tensor:
    return _torus(points, 0.55, 0.22)


def color(points, normals, view_dirs):
    return (points * 0.5 + 0.5).clamp(0, 1)


def _farthest_nearest(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest distance from a vertex of ``a`` to the nearest vertex of ``b`` (a sort of float rows would pair
    rows wrongly wherever two vertices' first coordinates differ in the last bit)."""
    return max(float(torch.cdist(chunk, b).min(dim=1).values.max()) for chunk in a.split(2048))


@pytest.mark.parametrize("block_res", [4, 8, 16])
def test_cuda_extraction_matches_the_cpu(block_res):
    cpu = extract_surface(torus, 96, block_res=block_res, device="cpu")
    gpu = extract_surface(torus, 96, block_res=block_res, device="cuda")
    assert gpu.vertices.is_cuda and gpu.faces.is_cuda
    assert gpu.faces.shape == cpu.faces.shape
    gpu_vertices = gpu.vertices.cpu().double()
    cpu_vertices = cpu.vertices.double()
    assert _farthest_nearest(gpu_vertices, cpu_vertices) < 1e-5 and _farthest_nearest(cpu_vertices, gpu_vertices) < 1e-5
    report = topology_report(gpu.vertices.cpu().numpy(), gpu.faces.cpu().numpy())
    assert report.closed_oriented_manifold, report


def test_cuda_build_mesh_with_colours_and_texture():
    pytest.importorskip("xatlas")
    pytest.importorskip("fast_simplification")
    mesh = build_mesh(torus, color, 128, device="cuda", to_world=(2.0, (1.0, 0.0, 0.0)), decimate_faces=5000,
                      texture_size=256)
    assert mesh.face_count <= 5000 and mesh.texture_png is not None
    normalised = (mesh.vertices - np.array([1.0, 0.0, 0.0])) / 2.0
    assert np.abs(mesh.vertex_colors[:, :3] / 255.0 - np.clip(normalised * 0.5 + 0.5, 0, 1)).max() < 0.01


def test_cuda_resolution_1024_is_watertight():
    surface = extract_surface(torus, 1024, device="cuda")
    report = topology_report(surface.vertices.cpu().numpy(), surface.faces.cpu().numpy())
    assert report.closed_oriented_manifold, report
    assert torus(surface.vertices).abs().max() < 0.5 * 2.0 / 1024


def test_cuda_clustering_matches_the_cpu():
    from carrara.backend.mesh.clustering import cluster_vertices

    mesh = extract_surface(torus, 160, device="cpu")
    target = mesh.faces.shape[0] // 6
    cpu = cluster_vertices(mesh.vertices, mesh.faces, target)
    gpu = cluster_vertices(mesh.vertices.cuda(), mesh.faces.cuda(), target)
    assert gpu[0].is_cuda and gpu[1].shape == cpu[1].shape
    gpu_vertices, cpu_vertices = gpu[0].cpu().double(), cpu[0].double()
    assert _farthest_nearest(gpu_vertices, cpu_vertices) < 1e-4 and _farthest_nearest(cpu_vertices, gpu_vertices) < 1e-4
    assert topology_report(gpu[0].cpu().numpy(), gpu[1].cpu().numpy()).boundary_edges == 0


def test_cuda_clustering_of_millions_of_cells():
    """Millions of cells at once (batched cuSOLVER once asked for 400 GB here): a 1024 torus, 3 M faces."""
    from carrara.backend.mesh.clustering import cluster_vertices

    mesh = extract_surface(torus, 1024, device="cuda")
    v, f = cluster_vertices(mesh.vertices, mesh.faces, mesh.faces.shape[0] // 3)
    assert mesh.faces.shape[0] / 4.5 <= f.shape[0] <= mesh.faces.shape[0] / 2
    assert float(torus(v).abs().max()) < 1e-3
