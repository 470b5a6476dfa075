"""Which files make up a dataset, and where each goes in a copy a remote backend can train on.

A COLMAP dataset travels as a workspace (``sparse/0/<model files>`` + ``images/<name>``) whatever its local
layout; a transforms.json travels with its photos at their paths relative to the json, so the file stays valid.
The dataset is read and its photos judged by ``dataset_source``, so the copy holds exactly the photos the model uses.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .dataset_source import ERROR, TRANSFORMS, DatasetSource, photo_problems, read_dataset

_MODEL_STEMS = ("cameras", "images", "points3D", "rigs", "frames")


class DatasetFilesError(ValueError):
    """A dataset that cannot be copied as it is; the message names the file and what to do."""


def dataset_files(path: str | Path) -> dict[str, Path]:
    """Map each path inside the copied dataset to the local file (raises DatasetFilesError or DatasetSourceError
    naming the file at fault)."""
    source = read_dataset(path)
    if source.images_dir is None:
        raise DatasetFilesError(f"{source.model_path}: the photos were not found (looked for an images/ folder "
                                "beside the model and up to three folders above); put them in <workspace>/images")
    if source.format == TRANSFORMS:
        files = {source.model_path.name: source.model_path}
        prefix = ""
    else:
        ext = source.names_file.suffix
        files = {f"sparse/0/{stem}{ext}": source.model_path / f"{stem}{ext}" for stem in _MODEL_STEMS
                 if (source.model_path / f"{stem}{ext}").is_file()}
        prefix = "images/"
    for image in source.photos():
        errors = [problem for problem in photo_problems(source, image) if problem.severity == ERROR]
        if errors:
            raise DatasetFilesError(str(errors[0]))
        files[prefix + _relative(source, image.name)] = source.photo_path(image)
    return files


def _relative(source: DatasetSource, name: str) -> str:
    """``name`` as a '/'-separated path that stays inside its folder (what a backend accepts)."""
    relative = PurePosixPath(os.path.normpath(name).replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise DatasetFilesError(f"{source.names_file}: the photo {name!r} is named through a path leading out of "
                                f"{source.images_dir}; name it relative to that folder to upload it")
    return relative.as_posix()
