"""Structure-from-Motion from photos or a video (issue 12): our ``prepare`` pipeline against pycolmap's plain
pipeline (CPU SIFT, exhaustive matching, incremental mapping) on the same images, in the same run.

    python3 benchmarks/bench_sfm.py --fox DIR --fountain DIR    # GPU machine (pycolmap-cuda12), or here on the CPU
    python3 benchmarks/bench_sfm.py --smoke                     # here, on the CPU: the bundled chair, seconds

- fox: the 50 photos (numbered in capture order) encoded here as an H.264 video, prepared by our pipeline (frames,
  GPU SIFT when pycolmap has CUDA, sequential matching, mapping, undistortion); the plain pipeline runs on the
  very frames ours took, within ``--baseline-limit-s``. Each stage's seconds, seconds per frame (so the figure
  for a 900-frame video follows), and the ratio of the totals.
- fountain: the 11 Strecha photos with ground-truth cameras, both pipelines: registered images, camera-centre
  error after a similarity alignment (% of the extent of the true centres) and the worst relative rotation
  between camera pairs (``pose_accuracy.py``).

``--smoke`` uses 8 renders of the bundled chair (in order round it) for both parts, the renderer's cameras as
the truth. Results: benchmarks/results/sfm_<gpu or cpu>.json.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _bootstrap

CONTEXT = _bootstrap.run_context()

import numpy as np  # noqa: E402  (after the bootstrap)
import pycolmap  # noqa: E402

from carrara.backend.prepare import video  # noqa: E402
from carrara.backend.prepare.pipeline import prepare  # noqa: E402
from carrara.shared.colmap import read_model  # noqa: E402
from carrara.shared.jobs import DatasetRef, PrepareConfig  # noqa: E402
from make_video import photos_in_order, write_video  # noqa: E402
from pose_accuracy import pose_errors  # noqa: E402


class QuietReporter:
    """Stage lines on stdout; progress is not printed (the stage times are the figures)."""

    def progress(self, **_: Any) -> None:
        pass

    def log(self, line: str, level: str = "info") -> None:
        print(f"  {level}: {line}" if level != "info" else f"  {line}", flush=True)

    def mesh(self, *_: Any) -> None:
        raise AssertionError("prepare makes no meshes")

    def artifact(self, *_: Any) -> None:
        pass

    def cancelled(self) -> bool:
        return False


def ours(source: Path, work: Path, config: PrepareConfig) -> dict[str, Any]:
    started = time.perf_counter()
    result = prepare(source, work / "dataset", work / "work", config, QuietReporter())
    total = time.perf_counter() - started
    return {"dataset": str(work / "dataset"), "seconds": round(total, 3), "stage_seconds": result.stage_seconds,
            "images": result.images, "registered": result.registered, "sift_device": result.sift_device,
            "matcher": result.matcher, "mapper": result.mapper, "pairs": result.pairs,
            "points": result.points, "mean_reprojection_error_px": result.mean_reprojection_error_px,
            "video": result.video}


def plain_pipeline(images: Path, work: Path, limit_s: float) -> dict[str, Any]:
    """pycolmap's defaults end to end (CPU SIFT, exhaustive matching, incremental mapping, undistortion),
    cancelled once ``limit_s`` has passed: how far it got is part of the figure."""
    work.mkdir(parents=True)
    database, sparse, out = work / "database.db", work / "sparse", work / "dataset"
    token = pycolmap.CancellationToken()
    timer = threading.Timer(limit_s, token.cancel)
    timer.start()
    times: dict[str, float] = {}
    figures: dict[str, Any] = {"finished": False, "limit_s": limit_s, "stage_seconds": times}
    started = time.perf_counter()
    steps = [("features", lambda: pycolmap.extract_features(database, images, device=pycolmap.Device.cpu,
                                                             cancellation_token=token)),
             ("matching", lambda: pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu,
                                                            cancellation_token=token)),
             ("mapping", lambda: figures.update(models=pycolmap.incremental_mapping(
                 database, images, sparse, cancellation_token=token))),
             ("undistortion", lambda: pycolmap.undistort_images(out, sparse / _largest(figures["models"]), images,
                                                                cancellation_token=token))]
    try:
        for stage, step in steps:
            begun = time.perf_counter()
            try:
                step()
            except (RuntimeError, OSError) as exc:
                figures["stopped_in"] = f"{stage} ({type(exc).__name__}: {exc})"
                return _plain_figures(figures, started)
            times[stage] = round(time.perf_counter() - begun, 3)
            if token.is_cancelled:
                figures["stopped_in"] = f"{stage} (time limit)"
                return _plain_figures(figures, started)
    finally:
        timer.cancel()
    figures["finished"] = True
    figures["dataset"] = str(out)
    return _plain_figures(figures, started)


def _largest(models: dict[int, pycolmap.Reconstruction]) -> str:
    return str(max(models, key=lambda index: models[index].num_reg_images()))


def _plain_figures(figures: dict[str, Any], started: float) -> dict[str, Any]:
    models = figures.pop("models", None) or {}
    best = max(models.values(), key=lambda m: m.num_reg_images(), default=None)
    figures["registered"] = best.num_reg_images() if best is not None else 0
    figures["seconds"] = round(time.perf_counter() - started, 3)
    return figures


def per_frame(run: dict[str, Any], frames: int) -> dict[str, float]:
    """Seconds per frame of each stage, and a linear projection to a 900-frame video (mapping grows faster than
    linearly, so that projection is a floor for it)."""
    rates = {stage: seconds / frames for stage, seconds in run["stage_seconds"].items()}
    return {"seconds_per_frame": {k: round(v, 4) for k, v in rates.items()},
            "linear_projection_900_frames_s": round(900 * sum(rates.values()), 1)}


def bench_video(photos: Path, scratch: Path, frames: int, max_side: int, limit_s: float) -> dict[str, Any]:
    clip = scratch / "capture.mp4"
    count = write_video(photos_in_order(photos, max_side), clip, fps=30)
    print(f"video: {count} frames from {photos} -> {clip}", flush=True)
    config = PrepareConfig(dataset=DatasetRef(path=str(clip)), frames=frames, max_side=max_side)
    mine = ours(clip, scratch / "ours", config)
    chosen = scratch / "frames"       # the frames ours took, for the baseline (the choice is deterministic)
    video.extract_frames(clip, chosen, count=frames, rate=None, max_side=max_side, reporter=QuietReporter())
    base = plain_pipeline(chosen, scratch / "plain", limit_s)
    result = {"video_frames": count, "ours": {**mine, **per_frame(mine, mine["images"])},
              "baseline_plain_pycolmap": {**base, **per_frame(base, mine["images"])}}
    if base["finished"]:
        result["ratio_baseline_over_ours_total"] = round(base["seconds"] / mine["seconds"], 2)
    else:
        result["ratio_baseline_over_ours_total_at_least"] = round(base["seconds"] / mine["seconds"], 2)
    return result


def bench_accuracy(photos: Path, truth: Path, scratch: Path, limit_s: float, **settings: Any) -> dict[str, Any]:
    config = PrepareConfig(dataset=DatasetRef(path=str(photos)), **settings)
    mine = ours(photos, scratch / "ours", config)
    mine["pose_errors"] = pose_errors(mine["dataset"], truth)
    base = plain_pipeline(photos, scratch / "plain", limit_s)
    if base.get("dataset"):
        base["pose_errors"] = pose_errors(base["dataset"], truth)
    return {"photos": len(list(photos.iterdir())), "ours": mine, "baseline_plain_pycolmap": base}


def chair_in_order(scratch: Path, count: int) -> tuple[Path, Path, Path]:
    """``count`` bundled chair renders at 8-50 degrees of elevation, in order of azimuth: named so for the video,
    under their own names for the accuracy (names pair them with the truth), and the true model."""
    chair = _bootstrap.REPO_ROOT / "examples" / "chair"
    truth = read_model(chair / "sparse" / "0")
    from carrara.shared.camera_convention import camera_centers
    ring = []
    for image in truth.images.values():
        centre = camera_centers(image.qvec[None], image.tvec[None])[0]
        elevation = np.degrees(np.arcsin(centre[2] / np.linalg.norm(centre)))
        if 8 <= elevation <= 50:
            ring.append((float(np.arctan2(centre[1], centre[0])), image.name))
    ordered, named = scratch / "chair_in_order", scratch / "chair_photos"
    ordered.mkdir()
    named.mkdir()
    for index, (_, name) in enumerate(sorted(ring)[:count]):
        (ordered / f"{index:03d}_{name}").write_bytes((chair / "images" / name).read_bytes())
        (named / name).write_bytes((chair / "images" / name).read_bytes())
    return ordered, named, chair / "sparse" / "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fox", type=Path, help="the fox's photos in capture order (instant_ngp_fox/images)")
    parser.add_argument("--fountain", type=Path, help="strecha_fountain_p11 (images/ and colmap_gt_poses/)")
    parser.add_argument("--frames", type=int, default=50, help="frames our pipeline takes from the video")
    parser.add_argument("--max-side", type=int, default=PrepareConfig.max_side)
    parser.add_argument("--baseline-limit-s", type=float, default=400.0)
    parser.add_argument("--smoke", action="store_true", help="CPU, 8 chair renders for both parts")
    args = parser.parse_args()
    if not (args.smoke or args.fox or args.fountain):
        parser.error("name --fox and/or --fountain (or --smoke)")
    payload: dict[str, Any] = {**CONTEXT, "benchmark": "sfm", "pycolmap": pycolmap.__version__,
                               "pycolmap_has_cuda": bool(pycolmap.has_cuda), "settings": vars(args) | {
                                   "fox": str(args.fox), "fountain": str(args.fountain)}}
    device = payload["device"]
    name = "sfm_" + ("cpu-smoke" if args.smoke else _bootstrap.gpu_slug(device) if device.get("gpu") else "cpu")
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="bench-sfm-") as scratch_dir:
        scratch = Path(scratch_dir)
        if args.smoke:
            ordered, photos, truth = chair_in_order(scratch, 8)
            parts = {"video": lambda folder: bench_video(ordered, folder, 8, 400, args.baseline_limit_s),
                     "accuracy": lambda folder: bench_accuracy(photos, truth, folder, args.baseline_limit_s,
                                                               max_features=2048)}
        else:
            parts = {}
            if args.fox:
                parts["video"] = lambda folder: bench_video(args.fox, folder, args.frames, args.max_side,
                                                            args.baseline_limit_s)
            if args.fountain:
                parts["accuracy"] = lambda folder: bench_accuracy(
                    args.fountain / "images", args.fountain / "colmap_gt_poses", folder, args.baseline_limit_s)
        for part, measure in parts.items():
            (scratch / part).mkdir()
            payload[part] = measure(scratch / part)
            _print_summary(payload, part)
            written = _bootstrap.write_results(name, payload)     # after each part: a later one may run out of time
    for path in written:
        print(f"wrote {path}")


def _print_summary(payload: dict[str, Any], part: str) -> None:
    if part == "video":
        v = payload["video"]
        print(f"video: ours {v['ours']['seconds']:.1f} s ({v['ours']['registered']}/{v['ours']['images']} "
              f"registered, SIFT on {v['ours']['sift_device']}), plain pycolmap "
              f"{v['baseline_plain_pycolmap']['seconds']:.1f} s "
              f"({'finished' if v['baseline_plain_pycolmap']['finished'] else 'stopped'}, "
              f"{v['baseline_plain_pycolmap']['registered']} registered)")
        print(f"video: ours per frame {v['ours']['seconds_per_frame']}, 900 frames ~ "
              f"{v['ours']['linear_projection_900_frames_s']} s")
    if part == "accuracy":
        for who in ("ours", "baseline_plain_pycolmap"):
            run = payload["accuracy"][who]
            errors = run.get("pose_errors") or {}
            print(f"accuracy {who}: {run['registered']} registered in {run['seconds']:.1f} s, centres "
                  f"{errors.get('centre_error_max_pct', float('nan')):.4f} % (max), worst pair rotation "
                  f"{errors.get('rotation_error_worst_pair_deg', float('nan')):.3f} deg")


if __name__ == "__main__":
    main()
