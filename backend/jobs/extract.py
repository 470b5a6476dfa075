"""The ``extract`` job and the asset every run ends with: a trained model meshed as the config asks, its files written.

``run_extract`` meshes a reconstruct job's newest checkpoint again (new resolution, face budget, texture);
``deliver_asset`` is also how a reconstruct run delivers its final mesh, and ``load_trained_model`` and
``asset_mesh`` serve the ``carrara-backend extract`` verb.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from ...shared.jobs import AssetSettings, ExtractConfig
from ...shared.mesh_data import MeshData
from ...shared.sphere import BoundingSphere
from ..mesh.atlas import AtlasError
from ..mesh.export import write_glb, write_ply
from ..mesh.extract import SPLIT_FROM_RESOLUTION
from ..mesh.pipeline import StepReport, build_mesh
from ..model.encoding_choice import encoding_for_checkpoint
from ..model.neural_surface import NeuralSurface
from ..train.checkpoint import CheckpointError, load_latest
from ..train.settings import TrainSettings
from .device import make_current, resolve_device
from .failure import JobFailed
from .reporting import Reporter


def run_extract(config: ExtractConfig, job_dir: Path, reporter: Reporter, device: str) -> None:
    """The server's extract job: the asset again from a reconstruct job's newest checkpoint (its sibling folder)."""
    source = Path(job_dir).parent / config.source_job_id
    try:
        torch_device = resolve_device(config.device if config.device != "auto" else device)
        make_current(torch.device(torch_device))
        model, normalization, iteration = load_trained_model(source, torch_device)
    except CheckpointError as exc:
        raise JobFailed(f"job {config.source_job_id} has no checkpoint to extract from yet ({exc})") from exc
    reporter.progress(iteration=0, total=1, loss=None, psnr=None, rate=0.0, eta_s=float("inf"), phase="extract")
    deliver_asset(model, normalization, iteration, config, Path(job_dir) / "meshes", reporter, torch_device)
    reporter.progress(iteration=1, total=1, loss=None, psnr=None, rate=0.0, eta_s=0.0, phase="extract")


def load_trained_model(run_dir: Path, device: str | torch.device) -> tuple[NeuralSurface, BoundingSphere, int]:
    """The model of a run folder's newest readable checkpoint, at its coarse-to-fine stage, ready to mesh."""
    found = load_latest(Path(run_dir) / "checkpoints")
    if found is None:
        raise CheckpointError(f"{Path(run_dir) / 'checkpoints'}: no checkpoint (is this a run folder written by "
                              "'carrara-backend train'?)")
    path, state = found
    settings = TrainSettings.from_checkpoint(path, state)
    encoding, _ = encoding_for_checkpoint(settings.model.sdf.encoding, "auto", device)
    model = NeuralSurface(settings.with_encoding(encoding).model)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), BoundingSphere.from_json(state["normalization"]), int(state["iteration"])


def asset_mesh(model: NeuralSurface, normalization: BoundingSphere, asset: AssetSettings,
               device: torch.device | str, *, texture: bool = True,
               on_step: StepReport | None = None, more_gpus: Sequence[str] = ()) -> MeshData:
    """The delivered mesh as ``asset`` asks for it (resolution, floaters, face budget, colours, texture);
    ``more_gpus`` share the surface's blocks from SPLIT_FROM_RESOLUTION on, each with a copy of the network."""
    with_texture = texture and asset.texture
    more = [] if asset.mesh_resolution < SPLIT_FROM_RESOLUTION else \
        [(gpu, copy.deepcopy(model).to(gpu).sdf_fn()) for gpu in more_gpus]
    wants_color = asset.vertex_colors or with_texture
    return build_mesh(model.sdf_fn(), model.color_fn() if wants_color else None, asset.mesh_resolution,
                      device=device, to_world=normalization.to_world_affine, remove_floaters=asset.remove_floaters,
                      remove_cavities=asset.remove_floaters and not model.config.sdf.inside_out,
                      decimate_faces=asset.decimate_faces, vertex_colors=asset.vertex_colors,
                      texture_size=asset.texture_size if with_texture else 0, on_step=on_step, more_devices=more)


def deliver_asset(model: NeuralSurface, normalization: BoundingSphere, iteration: int, asset: AssetSettings,
                  meshes_dir: Path, reporter: Reporter, device: torch.device | str,
                  more_gpus: Sequence[str] = ()) -> None:
    """Extract the final mesh, hand it to the reporter and write its files: the end of a run and of an extract job."""
    reporter.log(f"extracting the final mesh at resolution {asset.mesh_resolution}")
    steps: list[str] = []

    def on_step(name: str, seconds: float, faces: int) -> None:   # the panel shows each step as it ends
        steps.append(f"{name} {seconds:.1f} s")
        reporter.log(f"extracting: {name} done in {seconds:.1f} s, {faces:,} faces")

    try:
        mesh = asset_mesh(model, normalization, asset, device, on_step=on_step, more_gpus=more_gpus)
    except AtlasError as exc:   # the mesh is still worth having: with its vertex colours, without the texture
        reporter.log(f"no texture: {exc}; delivering the mesh with vertex colours only", "warning")
        steps.clear()
        mesh = asset_mesh(model, normalization, replace(asset, vertex_colors=True), device, texture=False,
                          on_step=on_step)
    if not mesh.face_count:
        raise JobFailed("the surface is empty inside the sphere: check that the sphere holds the object and the "
                        "photos show it")
    reporter.log(f"final mesh: {mesh.vertex_count:,} vertices, {mesh.face_count:,} faces ({', '.join(steps)})")
    reporter.mesh("final_mesh", mesh, iteration)
    meshes_dir.mkdir(parents=True, exist_ok=True)
    writers = {"ply": write_ply, "glb": write_glb}
    for fmt in asset.export_formats:
        path = meshes_dir / f"final.{fmt}"
        writers[fmt](mesh, path)
        reporter.artifact(path, fmt)
