"""Which files make up a dataset, and where each goes in a copy a remote backend can train on.

A COLMAP dataset travels as a workspace (``sparse/0/<model files>`` + ``images/<name>``) whatever its local
layout; a transforms.json travels with its photos at their paths relative to the json, so the file stays valid.
The model is read to learn its photos' names, so the copy holds exactly the photos the model uses.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from .colmap import find_model_dir, read_model
from .transforms_json import find_transforms_file, read_transforms

_MODEL_STEMS = ("cameras", "images", "points3D", "rigs", "frames")


class DatasetFilesError(ValueError):
    """A dataset that cannot be copied as it is; the message names the file and what to do."""


def dataset_files(path: str | Path) -> dict[str, Path]:
    """Map each path inside the copied dataset to the local file (raises DatasetFilesError, ColmapError or
    TransformsError naming the file at fault)."""
    path = Path(path)
    if path.suffix.lower() == ".json" or (path.is_dir() and not _has_colmap_model(path) and _has_transforms(path)):
        return _transforms_files(find_transforms_file(path))
    return _colmap_files(path)


def _has_colmap_model(path: Path) -> bool:
    try:
        find_model_dir(path)
    except ValueError:
        return False
    return True


def _has_transforms(path: Path) -> bool:
    try:
        find_transforms_file(path)
    except ValueError:
        return False
    return True


def _colmap_files(path: Path) -> dict[str, Path]:
    rec = read_model(path)
    model_dir, ext = find_model_dir(path)
    files = {f"sparse/0/{stem}{ext}": model_dir / f"{stem}{ext}" for stem in _MODEL_STEMS
             if (model_dir / f"{stem}{ext}").is_file()}
    if rec.images_dir is None:
        raise DatasetFilesError(f"{model_dir}: the photos were not found (looked for an images/ folder beside the "
                                "model and up to three folders above); put them in <workspace>/images")
    for image in rec.images.values():
        photo = rec.images_dir / image.name
        if not photo.is_file():
            raise DatasetFilesError(f"{photo}: photo of image {image.image_id} is missing; restore it or remove "
                                    "the image from the model")
        files[f"images/{_relative(image.name, photo)}"] = photo
    return files


def _transforms_files(json_path: Path) -> dict[str, Path]:
    rec, _extras = read_transforms(json_path)
    files = {json_path.name: json_path}
    for image in rec.images.values():
        files[_relative(image.name, json_path.parent / image.name)] = json_path.parent / image.name
    return files


def _relative(name: str, where: Path) -> str:
    """``name`` as a '/'-separated path that stays inside its folder (what a backend accepts)."""
    relative = PurePosixPath(name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise DatasetFilesError(f"{where}: this photo lies outside the dataset's folder ({name!r}); move the photos "
                                "under the dataset folder to upload them")
    return relative.as_posix()
