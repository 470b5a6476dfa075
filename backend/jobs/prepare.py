"""The ``prepare`` job: Structure-from-Motion on photos or a video (or an existing COLMAP model undistorted), the
dataset published for the client.

The job writes the dataset into its folder (``dataset/``) unless the config names an output path, and publishes
``prepare_report.json`` as its report artifact; the client imports the dataset from there. The stages are
``backend/prepare``; the ``carrara-backend prepare`` verb runs the same pipeline into a folder of the user's.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ...shared.dataset_manifest import MANIFEST_KIND
from ...shared.jobs import PrepareConfig
from ..prepare.pipeline import REPORT_NAME, prepare
from ..prepare.progress import Cancelled, PrepareFailed
from ..prepare.publish import publish_dataset
from .failure import JobFailed
from .reporting import Reporter, allowed_roots


def run(config: PrepareConfig, job_dir: Path, reporter: Reporter, device: str) -> None:
    """The server's job: SfM (or undistortion, for a model) on ``config.dataset`` into ``config.output_path`` or
    ``job_dir/dataset``; a dataset in the job's folder is published for a client to fetch (its manifest is the
    ``dataset`` artifact)."""
    out = Path(config.output_path) if config.output_path else job_dir / "dataset"
    try:
        result = prepare(Path(config.dataset.path), out, job_dir / "sfm", config, reporter,
                         allowed_roots(reporter))
    except PrepareFailed as exc:
        raise JobFailed(str(exc)) from exc
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
