"""Any dataset input found and read one way, and judged one way: the add-on's import, the server's check job and the
training loader all call these functions, so a dataset the check passes is one training accepts.

The one precedence: a ``.json`` file is a transforms.json; anything else is a COLMAP model when one is found there
(the folder, ``sparse/``, ``sparse/<n>/``, or the folder of a given model file); otherwise a folder's
``transforms.json`` (then ``transforms_train.json``). A folder holding both is read as COLMAP, and a warning names the
transforms.json left unused.

The verdict is a list of problems, each an error (training would fail or train on something wrong) or a warning,
naming the file or field at fault and what to do. Photos are judged one at a time (``photo_problems``) so a long
check can report progress and resume; ``judge_dataset`` runs the whole list at once.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .camera_models import SPHERICAL_FAMILY, is_pinhole_equivalent, model_by_name, pinhole_intrinsics
from .colmap import ColmapError, find_model_dir, read_model
from .reconstruction import Camera, Image, Reconstruction
from .sphere import BoundingSphere
from .transforms_json import TransformsError, find_transforms_file, read_transforms

ERROR, WARNING = "error", "warning"
COLMAP, TRANSFORMS = "COLMAP", "TRANSFORMS"
MIN_PHOTOS = 2                       # a surface needs at least two viewpoints
#: How far beyond the image's edges (as a fraction of its size) a principal point may lie before the intrinsics
#: cannot belong to these photos (a crop shifts it a little; a rescaled model moves it far out).
PRINCIPAL_POINT_MARGIN = 0.5
QUATERNION_TOLERANCE = 1e-3          # |q| - 1 beyond this: the stored rotation is not a rotation
#: What to do about lens distortion, worded once: the verdict and the add-on's Reconstruct button both end with it.
UNDISTORT_FIRST = ("undistort first: in Blender press Undistort for Training… in Carrara's Reconstruction panel, "
                   "or run `carrara-backend prepare <model folder> --out <new folder>`, or COLMAP's "
                   "image_undistorter (it writes undistorted images/ and a PINHOLE model)")

#: Reads a photo fully and returns its (width, height) in pixels; raises OSError or ValueError when the file is not
#: a readable image. Photos are decoded outside ``shared/`` (no imaging library here); without a reader, photos are
#: judged by their presence and place only.
PhotoReader = Callable[[Path], tuple[int, int]]


class DatasetSourceError(ValueError):
    """An input that is not a dataset or does not read; the message names the file at fault."""


@dataclass
class DatasetSource:
    """A dataset as read: the neutral reconstruction, where it came from, and what reading it noticed."""

    path: Path                        # what the caller named
    format: str                       # COLMAP or TRANSFORMS
    rec: Reconstruction               # ``rec.images_dir`` is the photos folder (None: not found)
    model_path: Path                  # the COLMAP model folder, or the transforms.json file
    names_file: Path                  # the file that names the photos: images.bin/.txt or the transforms.json
    sphere: BoundingSphere | None = None       # a transforms.json may bring its own bounding sphere
    unused: Path | None = None                 # a transforms.json beside the COLMAP model, passed over
    missing_files: list[str] = field(default_factory=list)   # transforms.json frames whose photo is absent
    notes: list[str] = field(default_factory=list)           # the reader's own warnings

    @property
    def images_dir(self) -> Path | None:
        return self.rec.images_dir

    def photos(self) -> list[Image]:
        """The photos in the order they are judged and trained: by name."""
        return sorted(self.rec.images.values(), key=lambda image: image.name)

    def photo_path(self, image: Image) -> Path:
        """Where ``image``'s photo is, unresolved; judge it (``photo_problems``) before opening it."""
        if self.rec.images_dir is None:
            raise DatasetSourceError(f"{self.model_path}: the photos' folder was not found")
        return self.rec.images_dir / image.name


@dataclass(frozen=True)
class DatasetProblem:
    severity: str                     # ERROR or WARNING
    where: str                        # the file, or the file and field, at fault
    text: str                         # what is wrong and what to do
    lens_distortion: bool = False     # the one error undistortion removes (prepare undistorts past it)

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.where, "severity": self.severity, "problem": self.text}
        return {**data, "lens_distortion": True} if self.lens_distortion else data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DatasetProblem":
        return cls(data["severity"], data["file"], data["problem"], bool(data.get("lens_distortion", False)))


@dataclass
class DatasetVerdict:
    """Every problem found in one dataset, in the order found, and what they add up to."""

    dataset: Path
    problems: list[DatasetProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[DatasetProblem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[DatasetProblem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def verdict(self) -> str:
        """ERROR (training refuses it), WARNING (trains, with caveats) or "ok"."""
        return ERROR if self.errors else WARNING if self.problems else "ok"

    @property
    def refusal(self) -> str | None:
        """The one message both the check job and the training loader fail with; None when training may start."""
        errors = self.errors
        if not errors:
            return None
        return f"{self.dataset}: {len(errors)} problem(s) would stop training, the first: {errors[0]}"


# ------------------------------------------------------------------------------------------------- reading


def read_dataset(path: str | Path) -> DatasetSource:
    """Find and read the dataset at ``path`` with the one precedence; DatasetSourceError names the file at fault."""
    path = Path(path).expanduser()
    try:
        if not path.exists():
            raise DatasetSourceError(f"{path}: no such file or folder")
        if path.suffix.lower() == ".json" and path.is_file():
            return _read_transforms(path, path)
        try:
            find_model_dir(path)
        except ColmapError as colmap_error:
            if not path.is_dir():
                raise
            try:
                return _read_transforms(path, find_transforms_file(path))
            except TransformsError:
                raise DatasetSourceError(f"{colmap_error}; nor is there a transforms.json or transforms_train.json "
                                         "in it") from None
        return _read_colmap(path)
    except (ColmapError, TransformsError, OSError) as error:
        raise DatasetSourceError(str(error)) from None


def _read_colmap(path: Path) -> DatasetSource:
    rec = read_model(path)
    _, ext = find_model_dir(path)
    unused = None
    if path.is_dir():
        try:
            unused = find_transforms_file(path)
        except TransformsError:
            pass
    return DatasetSource(path, COLMAP, rec, rec.model_dir, rec.model_dir / f"images{ext}", unused=unused)


def _read_transforms(path: Path, json_path: Path) -> DatasetSource:
    rec, extras = read_transforms(json_path)
    return DatasetSource(path, TRANSFORMS, rec, extras.path, extras.path, sphere=extras.sphere,
                         missing_files=list(extras.missing_files), notes=list(extras.warnings))


# ------------------------------------------------------------------------------------------------- judging


def open_dataset(path: str | Path, *,
                 allowed_roots: Sequence[Path] | None = None) -> tuple[DatasetSource | None, DatasetVerdict]:
    """Read the dataset and judge everything but its photos' contents (cheap: no photo is opened).

    Returns (None, a verdict with one error) when the input does not read. See ``photo_problems`` for
    ``allowed_roots``.
    """
    verdict = DatasetVerdict(Path(path))
    try:
        source = read_dataset(path)
    except DatasetSourceError as error:
        verdict.problems.append(DatasetProblem(ERROR, str(path), f"does not read as a dataset: {error}"))
        return None, verdict
    verdict.problems += dataset_problems(source, allowed_roots=allowed_roots)
    return source, verdict


def judge_dataset(path: str | Path, *, allowed_roots: Sequence[Path] | None = None,
                  read_photo: PhotoReader | None = None) -> tuple[DatasetSource | None, DatasetVerdict]:
    """The whole verdict on a dataset: ``open_dataset``, then every photo in order (``photo_problems``)."""
    source, verdict = open_dataset(path, allowed_roots=allowed_roots)
    if source is not None:
        for image in source.photos():
            verdict.problems += photo_problems(source, image, allowed_roots=allowed_roots, read_photo=read_photo)
    return source, verdict


def dataset_problems(source: DatasetSource, *, allowed_roots: Sequence[Path] | None = None) -> list[DatasetProblem]:
    """What is wrong with the model itself: where its photos are, its cameras, its poses, its size."""
    rec, where = source.rec, str(source.model_path)
    cameras_file = source.names_file.with_stem("cameras") if source.format == COLMAP else source.names_file
    problems = []
    if source.unused is not None:
        problems.append(DatasetProblem(WARNING, str(source.unused), f"not used: the COLMAP model in "
                                       f"{source.model_path} comes first; give this file's path to use it instead"))
    problems += _missing_frame_problems(source, allowed_roots)
    problems += [DatasetProblem(WARNING, str(source.names_file), note) for note in source.notes]
    if rec.images_dir is None:
        problems.append(DatasetProblem(ERROR, where, "no folder holding its photos was found (looked for images/ "
                                                     "next to the model and up to three folders above it); put "
                                                     "them in <workspace>/images"))
    if len(rec.images) < MIN_PHOTOS:
        problems.append(DatasetProblem(ERROR, str(source.names_file), f"{len(rec.images)} photo(s): training needs "
                                       f"at least {MIN_PHOTOS} photos of the object from different viewpoints"))
    if len(rec.points) == 0 and source.sphere is None:
        problems.append(DatasetProblem(WARNING, where, "the model has no 3D points and no bounding sphere: place "
                                                       "the sphere by hand"))
    for camera_id in sorted({image.camera_id for image in rec.images.values()}):
        problems += _camera_problems(rec.cameras[camera_id], str(cameras_file))
    for image in source.photos():
        length = float(np.linalg.norm(image.qvec))
        if not abs(length - 1.0) <= QUATERNION_TOLERANCE:
            problems.append(DatasetProblem(ERROR, str(source.names_file), f"image {image.image_id} "
                                           f"({image.name!r}) has a rotation quaternion of length {length:.6g}: "
                                           "not a rotation; re-export the model from COLMAP"))
    return problems


def photo_problems(source: DatasetSource, image: Image, *, allowed_roots: Sequence[Path] | None = None,
                   read_photo: PhotoReader | None = None) -> list[DatasetProblem]:
    """What is wrong with one photo: where it lies, whether it exists and reads, and its size against its camera.

    ``allowed_roots`` confines every photo path the dataset names (an image name in a COLMAP model, a ``file_path``
    in a transforms.json), symlinks resolved:
      - None (local use): each photo must lie inside the dataset's own photos folder (``source.images_dir``).
      - A sequence of folders (a server confining its clients, e.g. the upload store under ``--uploads-only``): each
        photo must lie inside one of these folders; the photos folder grants nothing by itself here, since it is
        found by searching up from the model and may lie outside them.
    A photo outside is an error naming the field and its value, and is never opened, so a verdict tells nothing
    about files outside.
    """
    if source.rec.images_dir is None:
        return []                         # reported once for the whole model
    path = source.photo_path(image)
    escape = _escape(path, source, allowed_roots)
    if escape:
        return [DatasetProblem(ERROR, str(source.names_file), f"{_name_field(source, image)} {image.name!r} "
                               f"{escape}; keep every photo inside "
                               f"{_confinement(source, allowed_roots)} (no '..', absolute paths or links leading "
                               "out)")]
    if not path.is_file():
        return [DatasetProblem(ERROR, str(path), f"photo of image {image.image_id} is missing; restore it or "
                                                 "remove the image from the model")]
    if read_photo is None:
        return []
    try:
        width, height = read_photo(path)
    except (OSError, ValueError) as error:
        return [DatasetProblem(ERROR, str(path), f"cannot be read as an image ({error})")]
    camera = source.rec.cameras[image.camera_id]
    if (width, height) != (camera.width, camera.height):
        return [DatasetProblem(ERROR, str(path), f"is {width}x{height} pixels but its camera {camera.camera_id} is "
                                                 f"{camera.width}x{camera.height}; use the photos the model was "
                                                 "made from (or rescale the model's cameras to match)")]
    return []


def _camera_problems(camera: Camera, where: str) -> list[DatasetProblem]:
    """Training needs undistorted pinhole photos with a positive focal length and a principal point on them."""
    name = f"camera {camera.camera_id} ({camera.model})"
    model = model_by_name(camera.model)
    if model.family == SPHERICAL_FAMILY:
        return [DatasetProblem(ERROR, where, f"{name} is a spherical model; training needs undistorted "
                                             "PINHOLE-type photos")]
    if not is_pinhole_equivalent(camera.model, camera.params):
        return [DatasetProblem(ERROR, where, f"{name} has lens distortion; training needs undistorted PINHOLE-type "
                                             f"photos: {UNDISTORT_FIRST}", lens_distortion=True)]
    if not (camera.width > 0 and camera.height > 0):
        return [DatasetProblem(ERROR, where, f"{name} is {camera.width}x{camera.height} pixels; a size must be "
                                             "positive: the model is corrupt, re-export it")]
    fx, fy, cx, cy = pinhole_intrinsics(camera.model, camera.params)
    if not all(math.isfinite(f) and f > 0 for f in (fx, fy)):
        return [DatasetProblem(ERROR, where, f"{name} has focal length fx={fx:g}, fy={fy:g}; it must be a positive "
                                             "number of pixels: the model is corrupt, calibrate or re-export it")]
    margin_x, margin_y = PRINCIPAL_POINT_MARGIN * camera.width, PRINCIPAL_POINT_MARGIN * camera.height
    if not (-margin_x <= cx <= camera.width + margin_x and -margin_y <= cy <= camera.height + margin_y):
        return [DatasetProblem(ERROR, where, f"{name} has its principal point at ({cx:g}, {cy:g}), far outside its "
                                             f"{camera.width}x{camera.height} image: the intrinsics do not belong "
                                             "to these photos (was the model made for another image size?)")]
    return []


def _missing_frame_problems(source: DatasetSource, allowed_roots: Sequence[Path] | None) -> list[DatasetProblem]:
    """A transforms.json frame whose photo is absent is left out (a warning), unless its path leads out (an error,
    whether or not the file exists, so the verdict tells nothing about files outside)."""
    problems, base = [], source.model_path.parent
    for name in source.missing_files:
        escape = _escape(base / name, source, allowed_roots)
        if escape:
            problems.append(DatasetProblem(ERROR, str(source.names_file), f"file_path {name!r} {escape}; keep "
                                           f"every photo inside {_confinement(source, allowed_roots)}"))
        else:
            problems.append(DatasetProblem(WARNING, str(base / name), "is listed in the transforms but missing; "
                                                                       "that frame is left out"))
    return problems


def _escape(path: Path, source: DatasetSource, allowed_roots: Sequence[Path] | None) -> str | None:
    """Why ``path`` lies outside where photos may be, or None when it is inside."""
    roots = [source.rec.images_dir] if allowed_roots is None else [Path(root) for root in allowed_roots]
    resolved = path.resolve()
    if any(root is not None and resolved.is_relative_to(root.resolve()) for root in roots):
        return None
    return f"leads to {resolved}, outside where the photos may be"


def _confinement(source: DatasetSource, allowed_roots: Sequence[Path] | None) -> str:
    if allowed_roots is None:
        return f"the photos folder {source.rec.images_dir}"
    return "the allowed folders " + ", ".join(str(root) for root in allowed_roots)


def _name_field(source: DatasetSource, image: Image) -> str:
    return "file_path" if source.format == TRANSFORMS else f"image {image.image_id}'s name"
