"""The stages in order, in a work folder that every run starts afresh: photos or frames → features → pairs and
matches → mapping → undistortion into the output folder, then ``prepare_report.json`` beside the dataset. An
existing COLMAP model goes straight to undistortion once it and its photos are judged (``existing_model.py``).

A run that fails or is cancelled leaves the output's previous dataset (if any) as it was and its work folder for
inspection; the next run clears the work folder first, so it never builds on a half-written database.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pycolmap

from ...shared.colmap import read_model
from ...shared.dataset_manifest import REPORT_NAME
from ...shared.jobs import PREPARE_VIDEO_SUFFIXES, PrepareConfig
from . import existing_model, features, mapping, matching, pairs, photos, undistortion, video
from .progress import failed
from .stage_reporter import StageReporter

WORK_NAME = ".sfm"                 # the CLI's default work folder, inside the output
LOG_NAME = "prepare_log.txt"


@dataclass
class PrepareResult:
    """What the artist and the benchmark want to know of a run; also written as ``prepare_report.json``."""

    input: str
    dataset: str
    source: str                       # "photos", "video" or "model" (an existing COLMAP model)
    images: int                       # photos or frames that went into SfM, or the model's images
    registered: int
    left_out: list[str]
    other_models: list[int]
    skipped: dict[str, str]           # input files that did not decode, and why
    matcher: str                      # matcher, mapper and SIFT device: "" for a model (no SfM ran)
    mapper: str
    sift_device: str                  # "cuda" or "cpu": which SIFT ran
    pairs: int
    verified_pairs: int
    points: int
    mean_reprojection_error_px: float | None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)
    camera_models_before: list[str] = field(default_factory=list)   # of the model undistortion started from
    camera_models_after: list[str] = field(default_factory=list)    # of the dataset: PINHOLE-type
    undistorted_images: int = 0       # photos resampled without distortion; 0 when copied as they were
    notes: list[str] = field(default_factory=list)


def find_input(source: Path) -> tuple[str, Path]:
    """("video", file), ("model", path) or ("photos", folder) for what the artist chose; an upload is a folder
    holding one of them. A COLMAP model comes first, as in ``shared/dataset_source``: a workspace holds both."""
    if not source.exists():
        raise failed("input", f"{source} does not exist", "Choose a folder of photos, a video file or a COLMAP model")
    if existing_model.is_model(source):
        return "model", source
    if source.is_file():
        if video.is_video(source):
            return "video", source
        raise failed("input", f"{source} is not a video ({', '.join(PREPARE_VIDEO_SUFFIXES)})",
                     "Choose a video file, the folder that holds your photos, or a COLMAP model's folder")
    if photos.list_photos(source):
        return "photos", source
    videos = sorted(p for p in source.iterdir() if video.is_video(p))
    if len(videos) == 1:
        return "video", videos[0]
    if len(videos) > 1:
        raise failed("input", f"{source} holds {len(videos)} videos ({', '.join(p.name for p in videos[:3])})",
                     "Choose one video file")
    return "photos", source          # photos.import_photos says what the folder holds instead


def prepare(source: Path, out: Path, work: Path, config: PrepareConfig, reporter: StageReporter,
            allowed_roots: Sequence[Path] | None = None) -> PrepareResult:
    """Run every stage; raises PrepareFailed (a message naming the stage, the file and what to do) or Cancelled.
    ``allowed_roots`` confines a model's photos as ``shared.dataset_source.photo_problems`` says."""
    kind, path = find_input(source)
    _check_output(out)
    pycolmap.logging.minloglevel = int(pycolmap.logging.Level.WARNING.value)  # the reporter tells the stages
    if kind == "model":
        return _prepare_model(source, out, reporter, allowed_roots)
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
    rec = model.reconstruction
    registered = [rec.images[i].name for i in rec.reg_image_ids()]
    with _timed(times, "undistortion"):
        undistortion.undistort(registered, model.folder, images_dir, out, reporter)
    result = PrepareResult(
        input=str(source), dataset=str(out), source=kind, images=len(names), registered=rec.num_reg_images(),
        left_out=model.left_out, other_models=model.other_models, skipped=skipped, matcher=matcher,
        mapper=config.mapper, sift_device="cuda" if device == pycolmap.Device.cuda else "cpu",
        pairs=len(pair_list), verified_pairs=verified, points=rec.num_points3D(),
        mean_reprojection_error_px=float(rec.compute_mean_reprojection_error()), stage_seconds=times,
        video=video_info, camera_models_before=sorted({camera.model.name for camera in rec.cameras.values()}),
        camera_models_after=_camera_models(out), undistorted_images=len(registered))
    shutil.rmtree(work, ignore_errors=True)
    return _finish(result, f"{result.registered} of {result.images} images", reporter)


def _prepare_model(source: Path, out: Path, reporter: StageReporter,
                   allowed_roots: Sequence[Path] | None) -> PrepareResult:
    """An existing model: judged with its photos, then undistorted, or copied as it is when it has nothing to
    undistort (the artist still gets the dataset folder the command promised, and a note that it was not needed)."""
    times: dict[str, float] = {}
    with _timed(times, "model"):
        model = existing_model.read_existing_model(source, reporter, allowed_roots)
    rec, names = model.source.rec, model.names
    _check_apart(out, [rec.model_dir, rec.images_dir])
    notes = []
    with _timed(times, "undistortion"):
        if model.distorted:
            undistortion.undistort(names, rec.model_dir, rec.images_dir, out, reporter)
        else:
            undistortion.copy_as_is(names, model.model_files, rec.images_dir, out, reporter)
            notes.append(f"{rec.model_dir}: the cameras ({', '.join(model.camera_models)}) have no lens "
                         "distortion, so the model and its photos were copied as they are (photos linked where "
                         "the disk allows); training reads the model itself just as well")
            reporter.log(notes[-1])
    result = PrepareResult(
        input=str(source), dataset=str(out), source="model", images=len(names), registered=len(names), left_out=[],
        other_models=[], skipped={}, matcher="", mapper="", sift_device="", pairs=0, verified_pairs=0,
        points=len(rec.points), mean_reprojection_error_px=model.mean_reprojection_error_px, stage_seconds=times,
        camera_models_before=model.camera_models, camera_models_after=_camera_models(out),
        undistorted_images=len(names) if model.distorted else 0, notes=notes)
    return _finish(result, f"{len(names)} images from the model in {rec.model_dir}", reporter)


def _finish(result: PrepareResult, what: str, reporter: StageReporter) -> PrepareResult:
    """Write the report beside the dataset and say what was made."""
    out = Path(result.dataset)
    (out / REPORT_NAME).write_text(json.dumps(result.__dict__, indent=2) + "\n", encoding="utf-8")
    change = " → ".join(", ".join(models) for models in (result.camera_models_before, result.camera_models_after))
    state = "undistorted" if result.undistorted_images else "copied as it was"
    reporter.log(f"dataset ready: {out} ({what}; cameras {change}, {state}) in "
                 f"{sum(result.stage_seconds.values()):.1f} s")
    return result


def _camera_models(dataset: Path) -> list[str]:
    return sorted({camera.model for camera in read_model(dataset).cameras.values()})


def _check_output(out: Path) -> None:
    """The output is new, empty, or an earlier prepared dataset: never someone else's folder."""
    if out.is_file():
        raise failed("output", f"{out} is a file", "Choose a folder for the dataset")
    if out.is_dir() and any(p.name not in (undistortion.STAGING, WORK_NAME, LOG_NAME) for p in out.iterdir()) and \
            not (out / REPORT_NAME).is_file():
        raise failed("output", f"{out} already holds files that are not a prepared dataset",
                     "Choose an empty or new folder for the dataset")


def _check_apart(out: Path, model_folders: list[Path | None]) -> None:
    """The dataset is written apart from the model it is made from: placing it replaces out/images and
    out/sparse, which must never be the artist's own."""
    target = out.resolve()
    for folder in filter(None, model_folders):
        held = folder.resolve()
        if target == held or target.is_relative_to(held) or held.is_relative_to(target):
            raise failed("output", f"{out} overlaps the model's own folder {folder}",
                         "Choose a folder apart from the model, such as <model folder>_undistorted")


@contextmanager
def _timed(times: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    times[stage] = round(time.perf_counter() - started, 3)
