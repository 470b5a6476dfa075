"""``carrara-backend extract``: a run folder's newest checkpoint meshed into one file, as the extract job meshes it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import torch

from ...shared.jobs import AssetSettings
from ...shared.protocol import ProtocolError
from ..jobs.device import resolve_device
from ..jobs.extract import asset_mesh, load_trained_model
from ..jobs.failure import JobFailed
from ..mesh.export import write_glb, write_ply
from ..train.checkpoint import CheckpointError
from ..train.launch import gpus_problem
from .launch import other_devices


def extract_from_cli(args: argparse.Namespace) -> int:
    out: Path = args.out
    writers = {".ply": write_ply, ".glb": write_glb}
    if out.suffix.lower() not in writers:
        print(f"error: --out {out} must end in .ply or .glb", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
        problem = gpus_problem(args.gpus, device, torch.cuda.device_count())
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        model, normalization, iteration = load_trained_model(args.run, device)
        asset = _run_asset_settings(args.run, args.resolution, 0 if args.full else args.faces)
    except (CheckpointError, JobFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ProtocolError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    budget = f"decimated to {asset.decimate_faces:,} faces" if asset.decimate_faces else "every face kept"
    print(f"extracting iteration {iteration} at resolution {asset.mesh_resolution} on {device} ({budget})",
          file=sys.stderr, flush=True)

    def on_step(name: str, seconds: float, faces: int) -> None:
        print(f"  {name}: {seconds:.1f} s, {faces:,} faces", file=sys.stderr, flush=True)

    mesh = asset_mesh(model, normalization, asset, device, texture=out.suffix.lower() == ".glb", on_step=on_step,
                      more_gpus=other_devices(args.gpus, device))
    out.parent.mkdir(parents=True, exist_ok=True)
    writers[out.suffix.lower()](mesh, out)
    print(f"{out}: {mesh.vertex_count:,} vertices, {mesh.face_count:,} faces from iteration {iteration}",
          file=sys.stderr)
    return 0


def _run_asset_settings(run_dir: Path, resolution: int, face_budget: int) -> AssetSettings:
    """The mesh choices the run was started with (its config.json, else the job defaults), at ``resolution`` and
    ``face_budget`` (0 keeps every face); vertex colours always, since a PLY carries nothing else."""
    try:
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["reconstruct"]
    except (OSError, ValueError, KeyError):
        saved = {}
    names = {f.name for f in fields(AssetSettings)} - {"mesh_resolution", "decimate_faces", "vertex_colors"}
    asset = AssetSettings(**{name: saved[name] for name in names if name in saved}, mesh_resolution=resolution,
                          decimate_faces=face_budget, vertex_colors=True)
    asset.validate()
    return asset
