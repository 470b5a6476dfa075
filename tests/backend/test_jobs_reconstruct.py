"""The reconstruct job end to end on the CPU: real Blender renders in, a surface near the truth and files out.

The scene (``engine_scenes.py``) is an off-centre rounded box in a sphere of radius 1.5 around (0.4, -0.3, 1.2),
rendered by Cycles as 32 RGBA photos of 64x64. The ``ci`` preset trains it for 300 iterations (about 20 s on two
free cores). Measured when written (seeds 0-3): mean |SDF| at true surface points 0.011-0.013 sphere radii (0.11
at the start), held-out PSNR 25.6-26.6 dB.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

from carrara.backend import cli
from carrara.backend.jobs.extract import load_trained_model
from carrara.backend.jobs.failure import JobFailed
from carrara.backend.jobs.reconstruct import run_reconstruction
from carrara.backend.train.checkpoint import list_checkpoints
from carrara.backend.train.presets import preset
from carrara.shared.jobs import DatasetRef, ReconstructConfig
from carrara.shared.mesh_data import MeshData
from engine_scenes import SceneTruth, cached_scene

SDF_BOUND = 0.03          # mean |SDF| at true surface points, in sphere radii, after the ci preset
MESH_BOUND = 0.035        # mean distance of final-mesh vertices to the true surface, in sphere radii


class RecordingReporter:
    """A Reporter that keeps everything it is told; ``stop_after`` steps it asks the job to stop."""

    def __init__(self, stop_after: int | None = None):
        self.progress_events: list[dict] = []
        self.lines: list[tuple[str, str]] = []
        self.meshes: list[tuple[str, MeshData, int]] = []
        self.artifacts: list[tuple[Path, str]] = []
        self.stop_after = stop_after
        self.asked = 0

    def progress(self, **fields) -> None:
        self.progress_events.append(fields)

    def log(self, line: str, level: str = "info") -> None:
        self.lines.append((line, level))

    def mesh(self, kind: str, mesh: MeshData, iteration: int) -> None:
        mesh.validate(kind)
        self.meshes.append((kind, mesh, iteration))

    def artifact(self, path: Path, kind: str) -> None:
        self.artifacts.append((Path(path), kind))

    def cancelled(self) -> bool:
        self.asked += 1
        return self.stop_after is not None and self.asked > self.stop_after


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> SceneTruth:
    return cached_scene(tmp_path_factory)


def _config(scene: SceneTruth, **overrides) -> ReconstructConfig:
    values = dict(dataset=DatasetRef(path=str(scene.folder)), sphere_center=scene.sphere_center.tolist(),
                  sphere_radius=scene.sphere_radius, preset="ci", device="cpu", preview_every_s=0.0,
                  mesh_resolution=64, texture=False, export_formats=["ply"])
    values.update(overrides)
    config = ReconstructConfig(**values)
    config.validate()
    return config


def _distance_to_truth(points: np.ndarray, scene: SceneTruth) -> np.ndarray:
    """Distance (world units) from each point to the nearest of the true surface samples."""
    truth = torch.as_tensor(scene.surface_points)
    return torch.cdist(torch.as_tensor(points, dtype=torch.float64), truth).min(dim=1).values.numpy()


def test_training_turns_the_sdf_into_the_box_and_delivers_meshes_in_place(scene, tmp_path):
    reporter = RecordingReporter()
    config = _config(scene, texture=True, texture_size=64, decimate_faces=3000, export_formats=["ply", "glb"])
    run_reconstruction(config, tmp_path, reporter, "cpu")

    total = preset("ci").iterations
    iterations = [e["iteration"] for e in reporter.progress_events]
    assert iterations == sorted(iterations) and iterations[-1] == total
    last = reporter.progress_events[-1]
    assert math.isfinite(last["loss"]) and last["psnr"] > 23.0 and last["total"] == total
    assert any("validation PSNR" in line for line, _ in reporter.lines)

    # The field itself: near zero on the true surface, the right sign off it (sphere radii).
    model, normalization, iteration = load_trained_model(tmp_path, "cpu")
    assert iteration == total
    points = torch.as_tensor(normalization.to_unit(scene.surface_points), dtype=torch.float32)
    normals = torch.as_tensor(scene.surface_normals, dtype=torch.float32)
    sdf = model.sdf_fn()
    assert float(sdf(points).abs().mean()) < SDF_BOUND
    assert float((sdf(points + 0.1 * normals) > 0).float().mean()) > 0.98
    assert float((sdf(points - 0.05 * normals) < 0).float().mean()) > 0.95
    centre = torch.as_tensor(normalization.to_unit(scene.box_center[None]), dtype=torch.float32)
    assert float(sdf(centre)) < -0.1

    # The final mesh, in the input's world coordinates: on the true surface, coloured, decimated, textured.
    finals = [(mesh, it) for kind, mesh, it in reporter.meshes if kind == "final_mesh"]
    assert len(finals) == 1 and finals[0][1] == total
    mesh = finals[0][0]
    assert 0 < mesh.face_count <= 3000
    assert np.mean(_distance_to_truth(mesh.vertices, scene)) < MESH_BOUND * scene.sphere_radius
    assert mesh.vertex_colors is not None and mesh.texture_png is not None and mesh.uv is not None
    colors = mesh.vertex_colors[:, :3].astype(float) / 255
    assert colors.std(axis=0).mean() > 0.1        # the checker's two colours, not one grey

    kinds = {kind: path for path, kind in reporter.artifacts}
    assert set(kinds) == {"ply", "glb"} and all(p.stat().st_size > 0 for p in kinds.values())
    ply = PlyData.read(str(kinds["ply"]))
    assert len(ply["vertex"]) == mesh.vertex_count
    assert (tmp_path / "config.json").is_file() and list_checkpoints(tmp_path / "checkpoints")


def test_cancel_checkpoints_and_the_next_run_resumes_with_previews(scene, tmp_path):
    config = _config(scene, iterations=10, preview_every_s=1e-6, preview_resolution=16, mesh_resolution=32)
    first = RecordingReporter(stop_after=4)
    run_reconstruction(config, tmp_path, first, "cpu")
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["ckpt_00000004.pt"]
    previews = [(mesh, it) for kind, mesh, it in first.meshes if kind == "preview_mesh"]
    assert previews and all(kind == "preview_mesh" for kind, _, _ in first.meshes)
    world_centre_distance = np.linalg.norm(previews[-1][0].vertices - scene.sphere_center, axis=1)
    assert world_centre_distance.max() <= scene.sphere_radius * 1.001       # previews land in place too
    assert any("stopped at iteration 4" in line for line, _ in first.lines)

    second = RecordingReporter()
    run_reconstruction(config, tmp_path, second, "cpu")
    assert any("resumed from ckpt_00000004.pt at iteration 4" in line for line, _ in second.lines)
    assert second.progress_events[0]["iteration"] > 4 and second.progress_events[-1]["iteration"] == 10
    assert [kind for kind, _, _ in second.meshes][-1] == "final_mesh"


def test_bad_input_fails_the_job_with_a_clear_message_and_no_checkpoint(scene, tmp_path):
    """Dataset errors reach the server as JobFailed (a message, no traceback); each kind of bad input has its own
    test in test_data_loading.py."""
    missing = _config(scene, dataset=DatasetRef(path=str(tmp_path / "nowhere")))
    with pytest.raises(JobFailed, match=r"nowhere: no such file or folder"):
        run_reconstruction(missing, tmp_path / "run", RecordingReporter(), "cpu")
    assert not list_checkpoints(tmp_path / "run" / "checkpoints")


def test_command_line_train_then_extract(scene, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", str(scene.folder), "--out", str(run), "--preset", "ci", "--iters", "3",
                     "--device", "cpu"]) == 0
    assert (run / "meshes" / "final.ply").is_file() and (run / "meshes" / "final.glb").is_file()
    assert "bounding sphere" in (run / "log.txt").read_text()
    out = tmp_path / "mesh.ply"
    capsys.readouterr()
    assert cli.main(["extract", str(run), "--resolution", "32", "--out", str(out), "--device", "cpu"]) == 0
    assert "surface:" in capsys.readouterr().err            # each step is said as it ends, not a silent minute
    vertex = PlyData.read(str(out))["vertex"]
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], 1)
    assert len(xyz) > 0 and np.linalg.norm(xyz - scene.sphere_center, axis=1).max() < 1.1 * scene.sphere_radius
    full, budget = tmp_path / "full.ply", tmp_path / "budget.ply"
    assert cli.main(["extract", str(run), "--resolution", "48", "--full", "--out", str(full), "--device", "cpu"]) == 0
    assert cli.main(["extract", str(run), "--resolution", "48", "--faces", "300", "--out", str(budget),
                     "--device", "cpu"]) == 0
    full_faces, budget_faces = (len(PlyData.read(str(path))["face"]) for path in (full, budget))
    assert budget_faces <= 300 < full_faces
    assert cli.main(["train", str(scene.folder), "--out", str(run), "--preset", "ci", "--device", "cpu"]) == 2
    assert "pass --resume" in capsys.readouterr().err
