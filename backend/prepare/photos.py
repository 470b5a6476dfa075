"""A folder of photos in: every JPEG, PNG or TIFF that decodes, scaled to the longest side asked for, copied into
the work folder's images/ under its own name. A photo that does not decode is skipped and named.

EXIF travels with each photo (COLMAP reads the focal length from it as a prior); when a photo is scaled down the
tags that state pixel pitch (FocalPlane X/Y resolution) no longer hold and are dropped, while the 35 mm
equivalent focal length stays valid at any size.
"""
from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from ...shared.jobs import PREPARE_PHOTO_SUFFIXES
from .progress import StageProgress, check_cancel, failed
from .stage_reporter import StageReporter

MIN_PHOTOS = 3
_EXIF_IFD = 0x8769
_FOCAL_PLANE_TAGS = (0xA20E, 0xA20F, 0xA210)   # FocalPlaneXResolution, FocalPlaneYResolution, ...ResolutionUnit
_FOCAL_35MM_TAG, _FOCAL_TAG = 0xA405, 0x920A


@dataclass
class PhotoSet:
    """The photos that will be matched, in name order, and the files left out with the reason."""

    names: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)     # file -> why
    with_focal_prior: int = 0                                  # photos whose EXIF states a focal length
    camera_keys: dict[str, tuple] = field(default_factory=dict)  # name -> (size, make, model, focal)

    def camera_groups(self) -> list[list[str]]:
        """Names grouped by camera: photos of one size, make, model and focal length share intrinsics."""
        groups: dict[tuple, list[str]] = {}
        for name in self.names:
            groups.setdefault(self.camera_keys[name], []).append(name)
        return list(groups.values())


def list_photos(folder: Path) -> list[Path]:
    """The photo files of ``folder`` (not its sub-folders), in name order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PREPARE_PHOTO_SUFFIXES)


def import_photos(folder: Path, images_dir: Path, max_side: int, reporter: StageReporter) -> PhotoSet:
    """Copy (or scale down) every readable photo of ``folder`` into ``images_dir``; fails below three."""
    files = list_photos(folder)
    if not files:
        others = sorted(p.name for p in folder.iterdir())[:5]
        raise failed("photos", f"{folder} holds no photos (JPEG, PNG or TIFF) and no video"
                     + (f"; it holds {', '.join(others)}" if others else ", it is empty"),
                     "Choose the folder of your photos, or a video file")
    images_dir.mkdir(parents=True, exist_ok=True)
    result, progress = PhotoSet(), StageProgress(reporter, "photos", len(files))
    for index, path in enumerate(files):
        check_cancel(reporter)
        try:
            key = _copy_photo(path, images_dir / path.name, max_side)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise failed("photos", f"the disk of {images_dir} is full ({exc.strerror})",
                             "Free space there and run again") from None
            _skip(result, path, exc, reporter)
        except (SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            _skip(result, path, exc, reporter)
        else:
            result.names.append(path.name)
            result.camera_keys[path.name] = key
            result.with_focal_prior += key[-1] is not None
        progress.update(index + 1)
    if len(result.names) < MIN_PHOTOS:
        raise failed("photos", f"only {len(result.names)} of the {len(files)} photos in {folder} are usable"
                     + (f" ({len(result.skipped)} do not decode)" if result.skipped else ""),
                     f"Structure-from-Motion needs at least {MIN_PHOTOS} overlapping photos: add more")
    reporter.log(f"{len(result.names)} photos in, {len(result.skipped)} skipped, "
                 f"{result.with_focal_prior} with an EXIF focal length")
    return result


def _skip(result: PhotoSet, path: Path, exc: Exception, reporter: StageReporter) -> None:
    result.skipped[str(path)] = f"does not decode as an image ({exc})"
    reporter.log(f"{path}: skipped, it does not decode as an image ({exc}); the other photos go on", "warning")


def _copy_photo(source: Path, target: Path, max_side: int) -> tuple:
    """Decode the whole photo (a truncated file fails here), then copy or scale it; returns its camera key
    (size, make, model, EXIF focal or None)."""
    with Image.open(source) as photo:
        photo.load()
        exif = photo.getexif()
        details = exif.get_ifd(_EXIF_IFD)
        focal = details.get(_FOCAL_35MM_TAG) or details.get(_FOCAL_TAG)
        orientation = exif.get(0x0112, 1)
        if max(photo.size) <= max_side and orientation in (1, None):
            shutil.copyfile(source, target)
            return (photo.size, exif.get(0x010F), exif.get(0x0110), None if focal is None else float(focal))
        upright = ImageOps.exif_transpose(photo)      # COLMAP ignores the orientation tag: bake it in
        scale = min(1.0, max_side / max(upright.size))
        if scale < 1.0:
            upright = upright.resize((round(upright.width * scale), round(upright.height * scale)),
                                     Image.Resampling.LANCZOS)
        kept = upright.getexif()
        for tag in _FOCAL_PLANE_TAGS:
            kept.get_ifd(_EXIF_IFD).pop(tag, None)
        options = {"quality": 95} if target.suffix.lower() in (".jpg", ".jpeg") else {}
        upright.save(target, exif=kept.tobytes(), **options)
        return (upright.size, exif.get(0x010F), exif.get(0x0110), None if focal is None else float(focal))
