"""Poses and points from the verified matches: COLMAP's incremental mapper (with its bundle adjustments) or its
global mapper (GLOMAP, in pycolmap since 3.12). The largest model is kept; any others are named in the log.

Which is the default was decided by measurement on the Strecha fountain (docs/photos-and-video.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pycolmap

from .progress import StageProgress, failed, watched
from .stage_reporter import StageReporter

MIN_REGISTERED = 3
SEED = 1         # a fixed seed: the same photos give the same model run after run


@dataclass
class MappedModel:
    reconstruction: pycolmap.Reconstruction
    folder: Path                                            # where it was written
    left_out: list[str] = field(default_factory=list)       # images no model registered
    other_models: list[int] = field(default_factory=list)   # images only in models not kept, per model


def map_images(database: Path, images_dir: Path, output: Path, names: list[str], *, mapper: str,
               reporter: StageReporter) -> MappedModel:
    """Run the mapper and keep the largest model; fails when it holds fewer than three images."""
    output.mkdir(parents=True, exist_ok=True)
    progress = StageProgress(reporter, "mapping", len(names))
    progress.update(0)
    if mapper == "global":
        options = pycolmap.GlobalPipelineOptions()
        options.random_seed = SEED
        with watched(reporter):     # GLOMAP takes no cancellation token: a cancel lands when it returns
            models = pycolmap.global_mapping(database, images_dir, output, options=options)
    else:
        options = pycolmap.IncrementalPipelineOptions()
        options.random_seed = SEED
        registered = [0]

        def next_image() -> None:
            registered[0] += 1
            progress.update(registered[0] + 1)

        with watched(reporter) as token:
            models = pycolmap.incremental_mapping(database, images_dir, output, options=options,
                                                  next_image_callback=next_image, cancellation_token=token)
    return _keep_largest(models, output, names, mapper, reporter)


def _keep_largest(models: dict[int, pycolmap.Reconstruction], output: Path, names: list[str], mapper: str,
                  reporter: StageReporter) -> MappedModel:
    if not models or max(m.num_reg_images() for m in models.values()) < MIN_REGISTERED:
        best = max((m.num_reg_images() for m in models.values()), default=0)
        raise failed("mapping", f"no model holds {MIN_REGISTERED} or more of the {len(names)} images (the largest "
                     f"has {best}): the photos do not overlap enough, or are too blurred",
                     "Take photos that overlap by about two thirds, each from a step further round the subject; "
                     "for a video, move more slowly")
    ranked = sorted(models.items(), key=lambda item: -item[1].num_reg_images())
    index, kept = ranked[0]
    registered = {kept.images[i].name for i in kept.reg_image_ids()}
    others = [len({m.images[i].name for i in m.reg_image_ids()} - registered) for _, m in ranked[1:]]
    result = MappedModel(kept, output / str(index), sorted(set(names) - registered), [n for n in others if n])
    reporter.progress(iteration=len(registered), total=len(names), loss=None, psnr=None, rate=float("nan"),
                      eta_s=float("nan"), phase="mapping")
    reporter.log(f"mapping ({mapper}): {len(registered)} of {len(names)} images registered, "
                 f"{kept.num_points3D():,} points, mean reprojection error "
                 f"{kept.compute_mean_reprojection_error():.3f} px")
    if result.other_models:
        reporter.log(f"{len(result.other_models)} smaller model(s) left out, holding "
                     f"{', '.join(map(str, result.other_models))} image(s) the kept one lacks: the capture has "
                     "parts that do not connect", "warning")
    if result.left_out:
        shown = ", ".join(result.left_out[:10]) + (" ..." if len(result.left_out) > 10 else "")
        reporter.log(f"{len(result.left_out)} image(s) not registered: {shown}", "warning")
    return result
