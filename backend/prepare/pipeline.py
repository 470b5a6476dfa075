"""The stages in order, in a work folder that every run starts afresh: photos or frames → features → pairs and
matches → mapping → undistortion into the output folder, then ``prepare_report.json`` beside the dataset.

A run that fails or is cancelled leaves the output's previous dataset (if any) as it was and its work folder for
inspection; the next run clears the work folder first, so it never builds on a half-written database.
"""
from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pycolmap

from ...shared.dataset_manifest import REPORT_NAME
from ...shared.jobs import PREPARE_VIDEO_SUFFIXES, PrepareConfig
from . import features, mapping, matching, pairs, photos, undistortion, video
from .progress import failed
from .stage_reporter import StageReporter

WORK_NAME = ".sfm"                 # the CLI's default work folder, inside the output
LOG_NAME = "prepare_log.txt"


@dataclass
class PrepareResult:
    """What the artist and the benchmark want to know of a run; also written as ``prepare_report.json``."""

    input: str
    dataset: str
    source: str                       # "photos" or "video"
    images: int                       # photos or frames that went into SfM
    registered: int
    left_out: list[str]
    other_models: list[int]
    skipped: dict[str, str]           # input files that did not decode, and why
    matcher: str
    mapper: str
    sift_device: str                  # "cuda" or "cpu": which SIFT ran
    pairs: int
    verified_pairs: int
    points: int
    mean_reprojection_error_px: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)


def find_input(source: Path) -> tuple[str, Path]:
    """("video", file) or ("photos", folder) for what the artist chose; an upload is a folder holding either."""
    if not source.exists():
        raise failed("input", f"{source} does not exist", "Choose a folder of photos or a video file")
    if source.is_file():
        if video.is_video(source):
            return "video", source
        raise failed("input", f"{source} is not a video ({', '.join(PREPARE_VIDEO_SUFFIXES)})",
                     "Choose a video file, or the folder that holds your photos")
    if photos.list_photos(source):
        return "photos", source
    videos = sorted(p for p in source.iterdir() if video.is_video(p))
    if len(videos) == 1:
        return "video", videos[0]
    if len(videos) > 1:
        raise failed("input", f"{source} holds {len(videos)} videos ({', '.join(p.name for p in videos[:3])})",
                     "Choose one video file")
    return "photos", source          # photos.import_photos says what the folder holds instead


def prepare(source: Path, out: Path, work: Path, config: PrepareConfig, reporter: StageReporter) -> PrepareResult:
    """Run every stage; raises PrepareFailed (a message naming the stage, the file and what to do) or Cancelled."""
    kind, path = find_input(source)
    _check_output(out)
    pycolmap.logging.minloglevel = int(pycolmap.logging.Level.WARNING.value)  # the reporter tells the stages
    shutil.rmtree(work, ignore_errors=True)
    images_dir, database = work / "images", work / "database.db"
    work.mkdir(parents=True)
    times: dict[str, float] = {}
    device = features.sift_device(config.device)
    video_info: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with _timed(times, "frames" if kind == "video" else "photos"):
        if kind == "video":
            frames = video.extract_frames(path, images_dir, count=config.frames, rate=config.frame_rate,
                                          max_side=config.max_side, reporter=reporter)
            names, groups = frames.names, [frames.names]
            video_info = {"decoded_frames": frames.decoded, "fps": frames.fps, "kept_frames": len(frames.names),
                          "dropped_blurred": frames.dropped_blurred}
        else:
            photo_set = photos.import_photos(path, images_dir, config.max_side, reporter)
            names, groups, skipped = photo_set.names, photo_set.camera_groups(), photo_set.skipped
    with _timed(times, "features"):
        features.extract(database, images_dir, groups, max_features=config.max_features,
                         max_side=config.max_side, device=device, reporter=reporter)
    matcher = pairs.choose_matcher(config.matcher, kind == "video", len(names))
    with _timed(times, "matching"):
        pair_list = pairs.image_pairs(names, matcher)
        reporter.log(f"matching {len(pair_list):,} pairs ({matcher})")
        verified = matching.match_pairs(database, pair_list, work, device=device, reporter=reporter)
    with _timed(times, "mapping"):
        model = mapping.map_images(database, images_dir, work / "sparse", names, mapper=config.mapper,
                                   reporter=reporter)
    with _timed(times, "undistortion"):
        undistortion.undistort(model.reconstruction, model.folder, images_dir, out, reporter)
    rec = model.reconstruction
    result = PrepareResult(
        input=str(source), dataset=str(out), source=kind, images=len(names), registered=rec.num_reg_images(),
        left_out=model.left_out, other_models=model.other_models, skipped=skipped, matcher=matcher,
        mapper=config.mapper, sift_device="cuda" if device == pycolmap.Device.cuda else "cpu",
        pairs=len(pair_list), verified_pairs=verified, points=rec.num_points3D(),
        mean_reprojection_error_px=float(rec.compute_mean_reprojection_error()), stage_seconds=times,
        video=video_info)
    (out / REPORT_NAME).write_text(json.dumps(result.__dict__, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    reporter.log(f"dataset ready: {out} ({result.registered} of {result.images} images, PINHOLE, undistorted) in "
                 f"{sum(times.values()):.1f} s")
    return result


def _check_output(out: Path) -> None:
    """The output is new, empty, or an earlier prepared dataset: never someone else's folder."""
    if out.is_file():
        raise failed("output", f"{out} is a file", "Choose a folder for the dataset")
    if out.is_dir() and any(p.name not in (undistortion.STAGING, WORK_NAME, LOG_NAME) for p in out.iterdir()) and \
            not (out / REPORT_NAME).is_file():
        raise failed("output", f"{out} already holds files that are not a prepared dataset",
                     "Choose an empty or new folder for the dataset")


@contextmanager
def _timed(times: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    times[stage] = round(time.perf_counter() - started, 3)
