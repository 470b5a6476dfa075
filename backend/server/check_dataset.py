"""The ``check_dataset`` job: read the model (COLMAP, else transforms.json), open every photo, report each problem
with the file it is in.

Worth running before hours of training: a missing, truncated or resized photo, or a model that does not read,
is found in seconds. Every problem is a log line naming the file; all of them also land in the artifact
``dataset_report.json``. The job fails when any problem would stop training (errors), and finishes when there
are only warnings. Progress is checkpointed per photo, so an interrupted check resumes where it stopped.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from ...shared.camera_models import MODELS_BY_NAME, SPHERICAL_FAMILY, is_pinhole_equivalent
from ...shared.colmap import ColmapError, read_model
from ...shared.jobs import CheckDatasetConfig
from ...shared.reconstruction import Reconstruction
from ...shared.transforms_json import TransformsError, read_transforms
from ..reporting import Reporter
from .kinds import JobFailed
from .workspace import write_json_atomic

REPORT_NAME = "dataset_report.json"
ERROR, WARNING = "error", "warning"


def run(config: CheckDatasetConfig, job_dir: Path, reporter: Reporter, device: str) -> None:
    dataset = Path(config.dataset.path)
    reconstruction, model_problems = _read(dataset, reporter)
    images = sorted(reconstruction.images.values(), key=lambda image: image.name)
    checkpoint = job_dir / "checkpoints" / "check_dataset.json"
    state = _load_checkpoint(checkpoint, dataset, len(images))
    if state["checked"]:
        reporter.log(f"resuming the check after photo {state['checked']} of {len(images)}")
    else:
        state["problems"] = model_problems
        for problem in state["problems"]:
            reporter.log(f"{problem['file']}: {problem['problem']}", problem["severity"])
    started, first = time.monotonic(), state["checked"]
    for index in range(first, len(images)):
        if reporter.cancelled():
            reporter.log(f"check stopped after photo {index} of {len(images)}; it resumes from there")
            return
        for problem in _photo_problems(reconstruction, images[index]):
            state["problems"].append(problem)
            reporter.log(f"{problem['file']}: {problem['problem']}", problem["severity"])
        state["checked"] = index + 1
        write_json_atomic(checkpoint, state)
        rate = (index + 1 - first) / max(time.monotonic() - started, 1e-6)
        reporter.progress(iteration=index + 1, total=len(images), loss=None, psnr=None, rate=rate,
                          eta_s=(len(images) - index - 1) / rate, phase="check")
    _finish(state["problems"], reconstruction, dataset, job_dir, reporter)


def _read(dataset: Path, reporter: Reporter) -> tuple[Reconstruction, list[dict[str, str]]]:
    """The one COLMAP reader, else the one transforms.json reader, and what reading found wrong with the model.
    A dataset neither reads fails the job naming both reasons."""
    colmap_error = None
    if dataset.suffix.lower() != ".json":
        try:
            reconstruction = read_model(dataset)
            return reconstruction, _model_problems(reconstruction, dataset, has_sphere=False)
        except ColmapError as exc:
            colmap_error = exc
    try:
        reconstruction, extras = read_transforms(dataset)
    except (TransformsError, OSError) as exc:
        reason = str(exc) if colmap_error is None else f"{colmap_error}; and {exc}"
        reporter.log(reason, ERROR)
        raise JobFailed(f"the dataset at {dataset} does not read: {reason}") from None
    problems = [_problem(str(extras.path.parent / name), WARNING, "is listed in the transforms but missing; that "
                                                                 "frame is left out") for name in extras.missing_files]
    problems += [_problem(str(extras.path), WARNING, text) for text in extras.warnings]
    return reconstruction, problems + _model_problems(reconstruction, dataset, has_sphere=extras.sphere is not None)


def _model_problems(reconstruction: Reconstruction, dataset: Path, has_sphere: bool) -> list[dict[str, str]]:
    where = str(reconstruction.model_dir or dataset)
    problems = []
    if reconstruction.images_dir is None:
        problems.append(_problem(where, ERROR, "no folder holding its photos was found (looked for images/ next to "
                                               "the model and up to three folders above it)"))
    if len(reconstruction.points) == 0 and not has_sphere:
        problems.append(_problem(where, WARNING, "the model has no 3D points and no bounding sphere: place the "
                                                 "sphere by hand"))
    for camera in reconstruction.cameras.values():
        model = MODELS_BY_NAME.get(camera.model)
        if model is not None and model.family == SPHERICAL_FAMILY:
            problems.append(_problem(where, ERROR, f"camera {camera.camera_id} is {camera.model}, a spherical "
                                                   "model that cannot be trained on"))
        elif not is_pinhole_equivalent(camera.model, camera.params):
            problems.append(_problem(where, WARNING, f"camera {camera.camera_id} is {camera.model} with lens "
                                                     "distortion; undistort the photos (COLMAP image_undistorter) "
                                                     "for the sharpest result"))
    return problems


def _photo_problems(reconstruction: Reconstruction, image) -> list[dict[str, str]]:
    if reconstruction.images_dir is None:
        return []       # reported once for the whole model
    path = reconstruction.images_dir / image.name
    camera = reconstruction.cameras[image.camera_id]
    if not path.is_file():
        return [_problem(str(path), ERROR, f"photo of image {image.image_id} is missing")]
    try:
        with PILImage.open(path) as photo:
            size = photo.size
            photo.load()       # decodes every byte: a truncated file fails here, not hours into training
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        return [_problem(str(path), ERROR, f"cannot be read as an image ({exc})")]
    if size != (camera.width, camera.height):
        return [_problem(str(path), ERROR, f"is {size[0]}x{size[1]} pixels but its camera {camera.camera_id} is "
                                           f"{camera.width}x{camera.height}; use the photos the model was made "
                                           "from (or rescale the model's cameras to match)")]
    return []


def _finish(problems: list[dict[str, str]], reconstruction: Reconstruction, dataset: Path, job_dir: Path,
            reporter: Reporter) -> None:
    errors = [p for p in problems if p["severity"] == ERROR]
    warnings = [p for p in problems if p["severity"] == WARNING]
    report_path = job_dir / "artifacts" / REPORT_NAME
    write_json_atomic(report_path, {"dataset": str(dataset), "model_dir": str(reconstruction.model_dir or ""),
                                    "images_dir": str(reconstruction.images_dir or ""),
                                    "cameras": len(reconstruction.cameras), "photos": len(reconstruction.images),
                                    "points": len(reconstruction.points), "errors": len(errors),
                                    "warnings": len(warnings), "problems": problems})
    reporter.artifact(report_path, "report")
    summary = (f"{len(reconstruction.images)} photos, {len(reconstruction.cameras)} cameras, "
               f"{len(reconstruction.points)} points: {len(errors)} errors, {len(warnings)} warnings")
    if errors:
        reporter.log(summary, ERROR)
        raise JobFailed(f"{dataset}: {len(errors)} problem(s) would stop training, the first: "
                        f"{errors[0]['file']}: {errors[0]['problem']} (all are in the log and {REPORT_NAME})")
    reporter.log(f"dataset OK: {summary}")


def _problem(file: str, severity: str, text: str) -> dict[str, str]:
    return {"file": file, "severity": severity, "problem": text}


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
