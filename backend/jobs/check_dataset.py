"""The ``check_dataset`` job: read the dataset, open every photo, report each problem with the file it is in.

Worth running before hours of training: a missing, truncated or resized photo, a distorted camera, or a model that
does not read, is found in seconds. The verdict is ``shared/dataset_source``'s, with training's photo reader, so
the job fails exactly when training would refuse the dataset, with the same message. Every problem is a log line
naming the file; all of them also land in the artifact ``dataset_report.json``. Progress is checkpointed per photo,
so an interrupted check resumes where it stopped.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ...shared.dataset_source import DatasetProblem, DatasetSource, DatasetVerdict, open_dataset, photo_problems
from ...shared.jobs import CheckDatasetConfig
from ...shared.reconstruction import Points3D, Reconstruction
from ..data.photo_probe import PhotoProbe
from ..train.checkpoint import write_json_atomic
from .failure import JobFailed
from .reporting import Reporter, allowed_roots

REPORT_NAME = "dataset_report.json"


def run(config: CheckDatasetConfig, job_dir: Path, reporter: Reporter, device: str) -> None:
    dataset = Path(config.dataset.path)
    roots = allowed_roots(reporter)
    source, verdict = open_dataset(dataset, allowed_roots=roots)
    images = source.photos() if source is not None else []
    checkpoint = job_dir / "checkpoints" / "check_dataset.json"
    state = _load_checkpoint(checkpoint, dataset, len(images))
    if state["checked"]:
        reporter.log(f"resuming the check after photo {state['checked']} of {len(images)}")
    else:
        state["problems"] = [problem.to_json() for problem in verdict.problems]
        for problem in verdict.problems:
            reporter.log(str(problem), problem.severity)
    started, first = time.monotonic(), state["checked"]
    read_photo = PhotoProbe()
    for index in range(first, len(images)):
        if reporter.cancelled():
            reporter.log(f"check stopped after photo {index} of {len(images)}; it resumes from there")
            return
        for problem in photo_problems(source, images[index], allowed_roots=roots, read_photo=read_photo):
            state["problems"].append(problem.to_json())
            reporter.log(str(problem), problem.severity)
        state["checked"] = index + 1
        write_json_atomic(checkpoint, state)
        rate = (index + 1 - first) / max(time.monotonic() - started, 1e-6)
        reporter.progress(iteration=index + 1, total=len(images), loss=None, psnr=None, rate=rate,
                          eta_s=(len(images) - index - 1) / rate, phase="check")
    verdict.problems = [DatasetProblem.from_json(problem) for problem in state["problems"]]
    _finish(verdict, source, job_dir, reporter)


def _finish(verdict: DatasetVerdict, source: DatasetSource | None, job_dir: Path, reporter: Reporter) -> None:
    rec = source.rec if source is not None else Reconstruction({}, {}, Points3D())
    counts = {"cameras": len(rec.cameras), "photos": len(rec.images), "points": len(rec.points)}
    report_path = job_dir / "artifacts" / REPORT_NAME
    write_json_atomic(report_path, {"dataset": str(verdict.dataset),
                                    "model_dir": str(rec.model_dir or ""), "images_dir": str(rec.images_dir or ""),
                                    **counts, "errors": len(verdict.errors), "warnings": len(verdict.warnings),
                                    "verdict": verdict.verdict,
                                    "problems": [problem.to_json() for problem in verdict.problems]})
    reporter.artifact(report_path, "report")
    summary = (f"{counts['photos']} photos, {counts['cameras']} cameras, {counts['points']} points: "
               f"{len(verdict.errors)} errors, {len(verdict.warnings)} warnings")
    if verdict.refusal is not None:
        reporter.log(summary, "error")
        raise JobFailed(verdict.refusal)
    reporter.log(f"dataset OK: {summary}")


def _load_checkpoint(path: Path, dataset: Path, count: int) -> dict[str, Any]:
    """A previous run's progress on the same dataset, or a fresh start."""
    fresh = {"dataset": str(dataset), "images": count, "checked": 0, "problems": []}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fresh
    if state.get("dataset") != str(dataset) or state.get("images") != count or state.get("checked", 0) >= count:
        return fresh     # another dataset, or a finished check: a resumed finished check looks again
    return state
