"""The ``train`` and ``extract`` verbs of ``carrara-backend``: the same engine as the server, on a terminal.

``train`` runs ``run_reconstruction`` (the server's reconstruct job) with a Reporter that draws a progress bar on
stderr and appends the log to the run folder's ``log.txt``; Ctrl-C stops at the next step with a checkpoint
(a second Ctrl-C aborts at once), and ``--resume`` continues. ``extract`` meshes a run folder's newest checkpoint.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import TextIO

import torch

from ...shared.jobs import AssetSettings, DatasetRef, ReconstructConfig
from ...shared.protocol import ProtocolError
from ...shared.mesh_data import MeshData
from ..reconstruct import asset_mesh, load_trained_model, resolve_device, run_reconstruction
from ..server.kinds import JobFailed
from .checkpoint import CheckpointError, list_checkpoints
from .distributed import Distributed
from .launch import gpus_problem, other_devices
from .presets import preset as get_preset

BAR_WIDTH = 24
_PLAIN_LINE_EVERY_S = 10.0


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:d}:{rest % 60:02d}"


class TerminalReporter:
    """A Reporter for a person at a terminal: one updating progress line, log lines above it, a log file."""

    def __init__(self, log_path: Path, stream: TextIO | None = None):
        self.stream = stream or sys.stderr          # looked up per reporter: sys.stderr may be replaced after import
        self.log_path = log_path
        self.interactive = self.stream.isatty()
        self._stop_requested = False
        self._last_plain = 0.0
        self._bar_shown = False

    def request_stop(self) -> None:
        self._stop_requested = True

    def progress(self, *, iteration: int, total: int, loss: float | None, psnr: float | None, rate: float,
                 eta_s: float, phase: str = "train") -> None:
        filled = int(BAR_WIDTH * min(1.0, iteration / max(total, 1)))
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {iteration}/{total}"
        if loss is not None:
            line += f"  loss {loss:.4f}"
        if psnr is not None:
            line += f"  PSNR {psnr:.2f} dB"
        line += f"  {rate:.1f} it/s  ETA {_duration(eta_s)}"
        if self.interactive:
            self.stream.write("\r" + line + "\x1b[K")
            self._bar_shown = True
        elif time.monotonic() - self._last_plain >= _PLAIN_LINE_EVERY_S or iteration >= total:
            self._last_plain = time.monotonic()
            self.stream.write(line + "\n")
        self.stream.flush()

    def log(self, line: str, level: str = "info") -> None:
        text = line if level == "info" else f"{level.upper()}: {line}"
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {level.upper():7s} {line}\n")

    def mesh(self, kind: str, mesh: MeshData, iteration: int) -> None:
        """The files are what a terminal user gets (``artifact``); in-memory meshes have no viewer here."""

    def artifact(self, path: Path, kind: str) -> None:
        self.log(f"wrote {path}")

    def cancelled(self) -> bool:
        return self._stop_requested


def train_from_cli(args: argparse.Namespace) -> int:
    from ..data.dataset import DatasetError, load_dataset

    run_dir: Path = args.out
    if list_checkpoints(run_dir / "checkpoints") and not args.resume:
        print(f"error: {run_dir} already holds a run's checkpoints; pass --resume to continue it, or choose "
              "another --out", file=sys.stderr)
        return 2
    try:
        preset = get_preset(args.preset)
        dataset = load_dataset(args.dataset, scene_type=args.scene_type)     # read and judged once, here
    except (ValueError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    sphere = dataset.normalization
    config = ReconstructConfig(dataset=DatasetRef(path=str(args.dataset)), sphere_center=list(sphere.center),
                               sphere_radius=sphere.radius, scene_type=args.scene_type, preset=args.preset,
                               iterations=args.iters, device=args.device, encoding=args.encoding, preview_every_s=0.0,
                               mesh_resolution=preset.cli_mesh_resolution, texture_size=preset.cli_texture_size)
    config.validate()
    reporter = TerminalReporter(run_dir / "log.txt")
    is_main = Distributed.from_env().is_main    # under torchrun every rank runs this; one says it
    if is_main:
        reporter.log(f"bounding sphere: centre {[round(v, 6) for v in sphere.center]}, "
                     f"radius {sphere.radius:.6g}")

    def on_interrupt(signum, frame) -> None:
        reporter.request_stop()
        if is_main:
            reporter.log("stopping after this step (Ctrl-C again aborts without a checkpoint)", "warning")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        run_reconstruction(config, run_dir, reporter, args.device, dataset=dataset)
    except JobFailed as exc:
        reporter.log(str(exc), "error")
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    return 130 if reporter.cancelled() else 0


def extract_from_cli(args: argparse.Namespace) -> int:
    from ..mesh.export import write_glb, write_ply

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
