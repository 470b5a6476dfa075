"""An existing COLMAP model in (made with COLMAP's GUI or CLI, often with its default SIMPLE_RADIAL or OPENCV
cameras): read and judged by the one dataset verdict (``shared/dataset_source.py``) before anything is written, its
photos read one by one, so that only undistortion is left to do. Carrara's reader reads the model; pycolmap only
undistorts it (``undistortion.py``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...shared.camera_models import is_pinhole_equivalent
from ...shared.colmap import MODEL_EXTENSIONS, MODEL_FILES, RIG_FILES, ColmapError, find_model_dir
from ...shared.dataset_source import ERROR, DatasetProblem, DatasetSource, open_dataset, photo_problems
from ..data.photo_probe import PhotoProbe
from .progress import StageProgress, check_cancel, failed
from .stage_reporter import StageReporter



@dataclass
class ExistingModel:
    """A model whose every photo is there and reads, with what undistortion will change."""

    source: DatasetSource

    @property
    def names(self) -> list[str]:
        return [image.name for image in self.source.photos()]

    @property
    def distorted(self) -> bool:
        return not all(is_pinhole_equivalent(c.model, c.params) for c in self.source.rec.cameras.values())

    @property
    def camera_models(self) -> list[str]:
        return sorted({camera.model for camera in self.source.rec.cameras.values()})

    @property
    def model_files(self) -> list[Path]:
        """The model's own files, copied as they are when there is nothing to undistort."""
        ext = self.source.names_file.suffix
        folder = self.source.model_path
        return [folder / f"{stem}{ext}" for stem in MODEL_FILES + RIG_FILES if (folder / f"{stem}{ext}").is_file()]

    @property
    def mean_reprojection_error_px(self) -> float | None:
        """Over every observation, as COLMAP states it (each point's error is the mean over its track)."""
        points = self.source.rec.points
        track_lengths = np.diff(points.track_offsets)
        if not len(points) or not track_lengths.sum():
            return None
        return float(np.average(points.error, weights=track_lengths))


def is_model(path: Path) -> bool:
    """A COLMAP model is at ``path`` (a model file, the folder, sparse/, sparse/<n>/), whole or not: a partial or
    corrupt one is still the artist's model, and reading it names the file at fault."""
    if path.is_file():
        return path.stem in MODEL_FILES and path.suffix.lower() in MODEL_EXTENSIONS
    try:
        find_model_dir(path)
        return True
    except ColmapError:
        sparse = path / "sparse"
        folders = [path, sparse, *(sparse.iterdir() if sparse.is_dir() else ())]
        return any((folder / f"{stem}{ext}").is_file() for folder in folders
                   for stem in MODEL_FILES for ext in MODEL_EXTENSIONS)


def read_existing_model(path: Path, reporter: StageReporter,
                        allowed_roots: Sequence[Path] | None = None) -> ExistingModel:
    """The model at ``path`` with every photo checked (inside its folder, present, decodes, of its camera's size);
    fails with the verdict's first error, all but the lens distortion that undistortion removes."""
    source, verdict = open_dataset(path, allowed_roots=allowed_roots)
    problems = _blocking(verdict.problems)
    if source is not None and not problems:
        progress, probe = StageProgress(reporter, "model", len(source.rec.images)), PhotoProbe()
        for index, image in enumerate(source.photos()):
            check_cancel(reporter)
            problems += _blocking(photo_problems(source, image, allowed_roots=allowed_roots, read_photo=probe))
            progress.update(index + 1)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise failed("model", f"{problems[0]}{more}", "Nothing was written; fix it and run again")
    for warning in verdict.warnings:
        reporter.log(str(warning), "warning")
    return ExistingModel(source)


def _blocking(problems: list[DatasetProblem]) -> list[DatasetProblem]:
    """The errors that stop undistortion: every one the verdict finds except the distortion it is here to remove."""
    return [p for p in problems if p.severity == ERROR and not p.lens_distortion]
