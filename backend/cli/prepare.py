"""``carrara-backend prepare``: the prepare job's Structure-from-Motion pipeline into a folder of the user's.

The verb writes where ``--out`` says and works in ``<out>/.sfm`` (cleared at the start of every run, removed after
success); Ctrl-C stops it, and the same command starts afresh.
"""
from __future__ import annotations

import argparse
import json
import signal

from ...shared.jobs import DatasetRef, PrepareConfig
from ...shared.protocol import ProtocolError
from ..prepare.pipeline import LOG_NAME, WORK_NAME, prepare
from ..prepare.progress import Cancelled, PrepareFailed
from .terminal import TerminalReporter


def prepare_from_cli(args: argparse.Namespace) -> int:
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
    except PrepareFailed as exc:
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
