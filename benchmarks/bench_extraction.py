"""Mesh extraction time and size at resolutions 512, 1024 and 2048 with vertex colours, against Neuralangelo's
way of extracting, in one run (issue 4, benchmark 7e; goals on one H100: 512 in <= 2 s, 2048 in <= 20 s).

    python3 benchmarks/bench_extraction.py            # on the GPU machine (about 1-2 minutes)
    python3 benchmarks/bench_extraction.py --smoke    # here, on the CPU, at tiny resolutions

Fields: a stand-in with the cost of the engine's networks. The SDF is an analytic solid (a bumpy sphere fused
with a torus, about 3 units^2 of surface) plus a small perturbation from a random MLP of Neuralangelo's SDF size
(a 51-wide frequency encoding standing in for the hash grid, 2 x 256 hidden, 1 + 256 outputs); the colour field
runs that SDF MLP for its feature and a 2 x 256 colour MLP on position, normal, view direction and feature.
Matmuls in TF32 ("high" precision), as the engine trains.

Measured (each after a warm-up at 256): ``build_mesh`` with floaters removed and vertex colours, and the bare
``extract_surface`` inside it, synchronised wall time; faces, vertices, lattice points evaluated, peak GPU
memory; at 512 the topology (watertight, welded) is checked. Baseline, same run, at 512: Neuralangelo's scheme
(``extract_mesh.py``: every 64^3 block of the lattice evaluated on the GPU, marching cubes per block on the CPU,
blocks concatenated unwelded, vertices outside the sphere dropped, colours on the GPU). Its CPU marching cubes is
our torch CPU path, PyMCubes not being on the GPU machine. Results: benchmarks/results/extraction_<gpu>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

import _bootstrap

CONTEXT = _bootstrap.run_context()

import numpy as np  # noqa: E402  (after the bootstrap, like the carrara imports)
import torch  # noqa: E402

from carrara.backend.mesh.colors import surface_normals, vertex_colors  # noqa: E402
from carrara.backend.mesh.extract import extract_surface  # noqa: E402
from carrara.backend.mesh.fields import default_batch  # noqa: E402
from carrara.backend.mesh.marching_cubes import marching_cubes  # noqa: E402
from carrara.backend.mesh.pipeline import build_mesh  # noqa: E402
from carrara.backend.mesh.topology import topology_report  # noqa: E402

GOALS_S = {512: 2.0, 2048: 20.0}
BASELINE_BLOCK_RES = 64     # Neuralangelo's extract_mesh.py default


class StandInFields(torch.nn.Module):
    """Analytic solid + random MLPs sized like Neuralangelo's SDF and colour networks."""

    def __init__(self, frequencies: int = 8, width: int = 256, feature: int = 256):
        super().__init__()
        self.register_buffer("freq", 2.0 ** torch.arange(frequencies) * torch.pi)
        encoded = 3 + 6 * frequencies
        self.sdf_mlp = torch.nn.Sequential(torch.nn.Linear(encoded, width), torch.nn.Softplus(beta=100),
                                           torch.nn.Linear(width, width), torch.nn.Softplus(beta=100),
                                           torch.nn.Linear(width, 1 + feature))
        self.color_mlp = torch.nn.Sequential(torch.nn.Linear(encoded + 6 + feature, width), torch.nn.ReLU(),
                                             torch.nn.Linear(width, width), torch.nn.ReLU(),
                                             torch.nn.Linear(width, 3))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        angles = x[:, :, None] * self.freq
        return torch.cat((x, angles.sin().flatten(1), angles.cos().flatten(1)), 1)

    @staticmethod
    def solid(x: torch.Tensor) -> torch.Tensor:
        bumps = 0.03 * torch.sin(9 * x[:, 0]) * torch.sin(9 * x[:, 1]) * torch.sin(9 * x[:, 2])
        ball = x.norm(dim=1) - 0.5 + bumps
        ring = torch.sqrt((x[:, 0] ** 2 + x[:, 2] ** 2).clamp_min(1e-12)) - 0.62
        torus = torch.sqrt(ring ** 2 + (x[:, 1] - 0.1) ** 2) - 0.12
        return torch.minimum(ball, torus)

    def sdf_and_feature(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.sdf_mlp(self.encode(x))
        return self.solid(x) + 0.002 * torch.tanh(out[:, 0]), out[:, 1:]

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.sdf_and_feature(x)[0]

    def color(self, x: torch.Tensor, normals: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        _, feature = self.sdf_and_feature(x)
        return torch.sigmoid(self.color_mlp(torch.cat((self.encode(x), normals, view_dirs, feature), 1)))


class Timer:
    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if self.cuda:
            torch.cuda.synchronize()
        return result, time.perf_counter() - start


def neuralangelo_style(fields: StandInFields, resolution: int, block_res: int, device: str) -> dict[str, Any]:
    """Every block evaluated, CPU marching cubes per block, no welding: what extract_mesh.py does."""
    cell, b = 2.0 / resolution, block_res
    batch = default_batch(torch.device(device))
    vertex_count = face_count = 0
    positions = []
    axis = torch.arange(b + 1, device=device, dtype=torch.float32)
    local = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    for bx in range(0, resolution, b):
        for by in range(0, resolution, b):
            for bz in range(0, resolution, b):
                origin = torch.tensor([bx, by, bz], device=device, dtype=torch.float32)
                points = -1.0 + (origin + local) * cell
                with torch.no_grad():
                    values = torch.cat([fields.sdf(p) for p in points.split(batch)])
                v, f = marching_cubes(values.view(b + 1, b + 1, b + 1).cpu())
                if f.shape[0] == 0:
                    continue
                v = -1.0 + (v + origin.cpu()) * cell
                keep = v.norm(dim=1) < 1.0
                f = f[keep[f].all(1)]
                v = v.to(device)
                normals = surface_normals(fields.sdf, v, f.to(device), 1.0 / resolution, batch)
                vertex_colors(fields.color, v, normals, batch)
                vertex_count += v.shape[0]
                face_count += f.shape[0]
                positions.append(v.cpu())
    unique = torch.unique(torch.cat(positions), dim=0).shape[0]
    return {"vertices": vertex_count, "faces": face_count, "duplicate_vertices": vertex_count - unique}


def measure(fields: StandInFields, resolution: int, device: str, timer: Timer, repeats: int,
            check_topology: bool) -> dict[str, Any]:
    cuda = device == "cuda"
    best_total = best_extract = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        surface, seconds = timer(lambda: extract_surface(fields.sdf, resolution, device=device))
        best_extract = min(best_extract, seconds)
        stats, faces_before = surface.stats, int(surface.faces.shape[0])
        del surface
        mesh, seconds = timer(lambda: build_mesh(fields.sdf, fields.color, resolution, device=device))
        best_total = min(best_total, seconds)
    entry: dict[str, Any] = {
        "seconds_build_mesh_with_colors": best_total, "seconds_extract_surface": best_extract,
        "faces": mesh.face_count, "vertices": mesh.vertex_count, "faces_before_floater_removal": faces_before,
        **stats, "points_evaluated_fraction": stats["points_evaluated"] / stats["lattice_points"],
        "peak_gpu_memory_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None,
    }
    if resolution in GOALS_S:
        entry["goal_seconds"] = GOALS_S[resolution]
        entry["meets_goal"] = best_total <= GOALS_S[resolution]
    if check_topology:
        report = topology_report(mesh.vertices, mesh.faces)
        entry["closed_oriented_manifold"] = report.closed_oriented_manifold
        entry["duplicate_vertices"] = int(mesh.vertex_count - np.unique(mesh.vertices, axis=0).shape[0])
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny resolutions: checks the script itself")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("bench_extraction.py needs a CUDA GPU (use --smoke to check the script on the CPU)", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    resolutions, baseline_resolution, warmup = ((512, 1024, 2048), 512, 256) if cuda else ((48, 64), 48, 32)
    baseline_block_res = BASELINE_BLOCK_RES if cuda else 16
    torch.set_float32_matmul_precision("high")
    torch.manual_seed(0)
    fields = StandInFields().to(device).eval()
    timer = Timer(cuda)
    results: dict[str, Any] = {"benchmark": "extraction", **CONTEXT,
                               "settings": {"fields": "analytic solid + Neuralangelo-sized random MLPs (TF32)",
                                            "block_res": 8, "lipschitz": 1.5, "eval_batch": default_batch(
                                                torch.device(device)), "remove_floaters": True,
                                            "vertex_colors": True, "baseline_block_res": baseline_block_res},
                               "resolutions": {}}
    build_mesh(fields.sdf, fields.color, warmup, device=device)
    for resolution in resolutions:
        entry = measure(fields, resolution, device, timer, repeats=1 if resolution >= 2048 else 2,
                        check_topology=resolution == baseline_resolution)
        results["resolutions"][str(resolution)] = entry
        print(f"resolution {resolution}: {entry['seconds_build_mesh_with_colors']:.2f} s with colours "
              f"({entry['seconds_extract_surface']:.2f} s surface), {entry['faces']} faces, "
              f"{entry['points_evaluated_fraction'] * 100:.2f} % of lattice points evaluated", flush=True)
        if cuda:
            torch.cuda.empty_cache()
    baseline, seconds = timer(lambda: neuralangelo_style(fields, baseline_resolution, baseline_block_res, device))
    ours = results["resolutions"][str(baseline_resolution)]
    results["baseline"] = {"method": "Neuralangelo extract_mesh.py scheme (dense blocks, CPU marching cubes per "
                                     "block, unwelded); its marching cubes is Carrara's CPU torch path",
                           "resolution": baseline_resolution, "seconds_with_colors": seconds, **baseline,
                           "speedup_of_build_mesh": seconds / ours["seconds_build_mesh_with_colors"]}
    print(f"baseline (Neuralangelo scheme) at {baseline_resolution}: {seconds:.2f} s, "
          f"{baseline['duplicate_vertices']} duplicate seam vertices; ours is "
          f"x{results['baseline']['speedup_of_build_mesh']:.1f} faster", flush=True)
    if not args.smoke:
        name = f"extraction_{_bootstrap.gpu_slug(CONTEXT['device'])}"
        print("written:", ", ".join(str(p) for p in _bootstrap.write_results(name, results)))
    ok = ours.get("closed_oriented_manifold", False) and ours.get("duplicate_vertices", 1) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
