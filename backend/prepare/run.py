"""The ``prepare`` job kind and the ``carrara-backend prepare`` verb: one pipeline, two ways to ask for it.

The job writes the dataset into its folder (``dataset/``) unless the config names an output path, and publishes
``prepare_report.json`` as its report artifact; the client imports the dataset from there. The verb writes
where ``--out`` says and works in ``<out>/.sfm`` (cleared at the start of every run, removed after success).
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
from pathlib import Path

from ...shared.dataset_manifest import MANIFEST_KIND
from ...shared.jobs import DatasetRef, PrepareConfig
from ...shared.protocol import ProtocolError
from ..reporting import Reporter
from ..server.kinds import JobFailed
from .pipeline import LOG_NAME, REPORT_NAME, WORK_NAME, prepare
from .progress import Cancelled
from .publish import publish_dataset


def run(config: PrepareConfig, job_dir: Path, reporter: Reporter, device: str) -> None:
    """The server's job: SfM on ``config.dataset`` into ``config.output_path`` or ``job_dir/dataset``; a dataset
    in the job's folder is published for a client to fetch (its manifest is the ``dataset`` artifact)."""
    out = Path(config.output_path) if config.output_path else job_dir / "dataset"
    try:
        result = prepare(Path(config.dataset.path), out, job_dir / "sfm", config, reporter)
    except Cancelled:
        reporter.log("prepare cancelled; the dataset folder was left as it was, and the next run starts afresh",
                     "warning")
        return
    report = job_dir / "artifacts" / REPORT_NAME
    report.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(result.dataset) / REPORT_NAME, report)
    reporter.artifact(report, "report")
    if not config.output_path:
        reporter.artifact(publish_dataset(out, report.parent), MANIFEST_KIND)


def prepare_from_cli(args: argparse.Namespace) -> int:
    from ..train.run import TerminalReporter

    config = PrepareConfig(dataset=DatasetRef(path=str(args.input)), output_path=str(args.out),
                           matcher=args.matcher, mapper=args.mapper, frames=args.frames, frame_rate=args.fps,
                           max_side=args.max_side, max_features=args.max_features, device=args.device)
    try:
        config.validate()
    except ProtocolError as exc:
        print(f"error: {exc.message}", flush=True)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    reporter = TerminalReporter(args.out / LOG_NAME)
    previous = signal.signal(signal.SIGINT, lambda *_: reporter.request_stop())
    try:
        result = prepare(args.input, args.out, args.out / WORK_NAME, config, reporter)
    except JobFailed as exc:
        reporter.log(str(exc), "error")
        return 1
    except Cancelled:
        reporter.log("stopped; run the same command again to start afresh", "warning")
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    print(json.dumps({"dataset": result.dataset, "registered": result.registered, "images": result.images,
                      "stage_seconds": result.stage_seconds}))
    return 0
