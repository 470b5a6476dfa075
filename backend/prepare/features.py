"""SIFT features into the COLMAP database, in batches so that progress (features k/N) and cancel reach the
artist; on the GPU when this pycolmap was built with CUDA (pycolmap-cuda12), else on the CPU.

Photos that share a camera (same size and EXIF make, model and focal length; every frame of a video) are
extracted as one camera: the first batch of a group creates it, later batches name it.
"""
from __future__ import annotations

import math
from pathlib import Path

import pycolmap

from .progress import StageProgress, failed, watched
from .stage_reporter import StageReporter

CAMERA_MODEL = "SIMPLE_RADIAL"   # one focal length and one radial term: what phone and DSLR photos need
BATCHES = 20                     # progress steps per stage at most


def sift_device(asked: str) -> pycolmap.Device:
    """GPU SIFT when asked for or available ("auto"); "cuda" without a CUDA build fails naming the fix."""
    if asked == "cpu" or (asked == "auto" and not pycolmap.has_cuda):
        return pycolmap.Device.cpu
    if not pycolmap.has_cuda:
        raise failed("features", "SIFT on the GPU was asked for, but this pycolmap has no CUDA",
                     "Install pycolmap-cuda12 in place of pycolmap on the backend (docs/photos-and-video.md), "
                     "or choose device 'auto' or 'cpu'")
    return pycolmap.Device.cuda


def extract(database: Path, images_dir: Path, groups: list[list[str]], *, max_features: int, max_side: int,
            device: pycolmap.Device, reporter: StageReporter) -> None:
    """Features for every image of every group (each group one camera) into ``database``."""
    total = sum(len(group) for group in groups)
    batch = max(4, math.ceil(total / BATCHES))
    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = max_side
    options.sift.max_num_features = max_features
    done, progress = 0, StageProgress(reporter, "features", total)
    progress.update(0)
    for group in groups:
        camera_id = -1
        for start in range(0, len(group), batch):
            names = group[start:start + batch]
            reader = pycolmap.ImageReaderOptions()
            reader.camera_model = CAMERA_MODEL
            reader.existing_camera_id = camera_id
            with watched(reporter) as token:
                pycolmap.extract_features(database, images_dir, image_names=names,
                                          camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                          extraction_options=options, device=device, cancellation_token=token)
            done += len(names)
            progress.update(done)
            if camera_id < 0:
                with pycolmap.Database.open(database) as db:
                    camera_id = db.read_image_with_name(names[0]).camera_id
    with pycolmap.Database.open(database) as db:
        keypoints, cameras = db.num_keypoints(), db.num_cameras()
        priors = sum(camera.has_prior_focal_length for camera in db.read_all_cameras())
    reporter.log(f"features: {keypoints:,} keypoints in {total} images, {cameras} camera(s), {priors} with an "
                 f"EXIF focal length prior, SIFT on the {'GPU' if device == pycolmap.Device.cuda else 'CPU'}")
