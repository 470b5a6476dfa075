"""The registered photos undistorted to PINHOLE cameras: the dataset ``train`` reads as it is.

COLMAP's undistorter writes ``images/`` and ``sparse/`` into a staging folder inside the output; only when every
photo is there are they moved into place as ``images/`` and ``sparse/0/``, so a full disk or a cancel never
leaves a half dataset where a finished one is expected. A model that is undistorted already goes through the same
staging as it is (``copy_as_is``): its files copied, its photos linked.
"""
from __future__ import annotations

import errno
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pycolmap

from .linking import link_or_copy
from .progress import StageProgress, check_cancel, failed, watched
from .stage_reporter import StageReporter

STAGING = ".undistorting"
SPACE_MARGIN = 1.5       # undistorted JPEGs are about as large as the inputs; ask for half as much again
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def undistort(names: list[str], model_dir: Path, images_dir: Path, out: Path, reporter: StageReporter) -> None:
    """Write ``out/images`` and ``out/sparse/0`` (PINHOLE) from the model in ``model_dir`` whose registered images
    are ``names`` (paths relative to ``images_dir``)."""
    out.mkdir(parents=True, exist_ok=True)
    _check_space(names, images_dir, out)
    progress = StageProgress(reporter, "undistortion", len(names))
    progress.update(0)
    with _staged(out) as staging:
        written = staging / "images"
        with watched(reporter, progress, lambda: _files_in(written)) as token:
            pycolmap.undistort_images(staging, model_dir, images_dir, output_type="COLMAP",
                                      cancellation_token=token)
        missing = [name for name in names if not (written / name).is_file()]
        if missing:
            raise failed("undistortion", f"{len(missing)} undistorted photo(s) were not written to {written}, "
                         f"the first {missing[0]} (is the disk full?)",
                         f"Free space on the disk of {out} and run again")
    progress.update(len(names))


def copy_as_is(names: list[str], model_files: list[Path], images_dir: Path, out: Path,
               reporter: StageReporter) -> None:
    """Write ``out/images`` (the photos ``names``, linked where the disk allows) and ``out/sparse/0`` (copies of
    ``model_files``) for a model with nothing to undistort."""
    out.mkdir(parents=True, exist_ok=True)
    progress = StageProgress(reporter, "undistortion", len(names))
    progress.update(0)
    with _staged(out) as staging:
        (staging / "sparse").mkdir()
        (staging / "images").mkdir()
        for path in model_files:
            shutil.copyfile(path, staging / "sparse" / path.name)
        for index, name in enumerate(names):
            check_cancel(reporter)
            link_or_copy(images_dir / name, staging / "images" / name)
            progress.update(index + 1)


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A clean staging folder inside ``out``, placed as the dataset when the block ends well and removed always;
    a full disk fails naming it."""
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        yield staging
        _place(staging, out)
    except OSError as exc:
        if exc.errno in _FULL_DISK:
            raise failed("undistortion", f"the disk of {out} is full ({exc.strerror})",
                         "Free space there, or choose an output folder on another disk, and run again") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _files_in(folder: Path) -> int:
    """Files written so far under ``folder`` (photo names may hold sub-folders)."""
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


def _check_space(names: list[str], images_dir: Path, out: Path) -> None:
    needed = SPACE_MARGIN * sum((images_dir / name).stat().st_size for name in names)
    free = shutil.disk_usage(out).free
    if free < needed:
        raise failed("undistortion", f"the disk of {out} has {free / 1e6:.1f} MB free, the undistorted photos need "
                     f"about {needed / 1e6:.1f} MB", "Free space there, or choose an output folder on another disk")


def _place(staging: Path, out: Path) -> None:
    """Swap the new images/ and sparse/0/ in for any previous ones."""
    for name in ("images", "sparse"):
        shutil.rmtree(out / name, ignore_errors=True)
    (staging / "images").rename(out / "images")
    model = out / "sparse" / "0"
    model.mkdir(parents=True)
    for path in (staging / "sparse").iterdir():
        if path.is_file():
            path.rename(model / path.name)
