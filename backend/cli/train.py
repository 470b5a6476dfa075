"""``carrara-backend train``: the reconstruct job on a terminal (``launch.py`` starts one per GPU for ``--gpus N``).

The verb reads and judges the dataset once, then runs ``run_reconstruction`` (the server's reconstruct job) with a
TerminalReporter that draws a progress bar on stderr and appends the log to the run folder's ``log.txt``; Ctrl-C
stops at the next step with a checkpoint (a second Ctrl-C aborts at once), and ``--resume`` continues.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ...shared.jobs import DatasetRef, ReconstructConfig
from ..data.dataset import DatasetError, load_dataset
from ..jobs.failure import JobFailed
from ..jobs.reconstruct import run_reconstruction
from ..train.checkpoint import list_checkpoints
from ..train.distributed import Distributed
from ..train.presets import preset as get_preset
from .terminal import TerminalReporter


def train_from_cli(args: argparse.Namespace) -> int:
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
