"""The registered photos undistorted to PINHOLE cameras: the dataset ``train`` reads as it is.

COLMAP's undistorter writes ``images/`` and ``sparse/`` into a staging folder inside the output; only when every
photo is there are they moved into place as ``images/`` and ``sparse/0/``, so a full disk or a cancel never
leaves a half dataset where a finished one is expected.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pycolmap

from .progress import StageProgress, failed, watched
from .stage_reporter import StageReporter

STAGING = ".undistorting"
SPACE_MARGIN = 1.5       # undistorted JPEGs are about as large as the inputs; ask for half as much again
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def undistort(model: pycolmap.Reconstruction, model_dir: Path, images_dir: Path, out: Path,
              reporter: StageReporter) -> None:
    """Write ``out/images`` and ``out/sparse/0`` (PINHOLE) from ``model``'s registered images."""
    names = [model.images[i].name for i in model.reg_image_ids()]
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    _check_space(names, images_dir, out)
    progress = StageProgress(reporter, "undistortion", len(names))
    progress.update(0)
    written = staging / "images"
    try:
        staging.mkdir()
        with watched(reporter, progress, lambda: sum(1 for _ in written.iterdir()) if written.is_dir() else 0) \
                as token:
            pycolmap.undistort_images(staging, model_dir, images_dir, output_type="COLMAP",
                                      cancellation_token=token)
        missing = [name for name in names if not (written / name).is_file()]
        if missing:
            raise failed("undistortion", f"{len(missing)} undistorted photo(s) were not written to {written}, "
                         f"the first {missing[0]} (is the disk full?)",
                         f"Free space on the disk of {out} and run again")
        _place(staging, out)
    except OSError as exc:
        if exc.errno in _FULL_DISK:
            raise failed("undistortion", f"the disk of {out} is full ({exc.strerror})",
                         "Free space there, or choose an output folder on another disk, and run again") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress.update(len(names))


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
