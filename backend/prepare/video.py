"""A video in: frames chosen by sharpness and spacing, written as JPEGs the rest of the pipeline treats as photos.

Two passes over the file (decoding is cheap next to SfM, and nothing but one number per frame is held): the
first scores every frame's sharpness, the second writes the chosen ones. Choosing splits the video into as many
equal stretches as frames are wanted and takes the sharpest frame of each, so the picks are spread over the
whole capture (what sequential matching needs) and a motion-blurred frame loses to its sharp neighbours; a pick
much blurrier than the picks around it is dropped (a gap matches better than a smeared frame). A phone's portrait
video stores landscape pixels and a display rotation; the written frames are turned upright as players show them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from ...shared.jobs import PREPARE_VIDEO_SUFFIXES
from .progress import StageProgress, check_cancel, failed
from .stage_reporter import StageReporter

SCORE_SIDE = 360          # frames are scored at this longest side: blur shows at any scale, decoding cost does not
BLUR_DROP_RATIO = 0.3     # a pick below this fraction of its neighbours' median sharpness is dropped
NEIGHBOURS = 4            # picks on each side that make that median
MIN_FRAMES = 3


@dataclass
class VideoFrames:
    """What was taken from a video: the written frame names (time order) and the figures behind the choice."""

    names: list[str]
    decoded: int               # frames in the video that decoded
    dropped_blurred: int       # picks dropped as much blurrier than their neighbours
    fps: float


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in PREPARE_VIDEO_SUFFIXES


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blur (defocus or motion)."""
    g = gray.astype(np.float32)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


def upright(image: Image.Image, rotation_deg: float) -> Image.Image:
    """The frame as a player shows it. ``rotation_deg`` is the stream's display rotation as PyAV gives it
    (``VideoFrame.rotation``: counter-clockwise degrees, from FFmpeg's display matrix), which decoders leave to the
    player; phones write multiples of 90. Flips in the matrix are not applied (phones do not write them)."""
    quarter = round(rotation_deg / 90) % 4
    turns = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
    return image if quarter == 0 else image.transpose(turns[quarter])


def choose_frames(scores: np.ndarray, count: int) -> tuple[list[int], int]:
    """Indices of the frames to keep (ascending) and how many picks were dropped as blurred.

    One pick per equal stretch of the video, the sharpest in it, at least half a stretch after the previous
    pick (so two picks never sit side by side at a stretch boundary)."""
    total = len(scores)
    count = min(count, total)
    stretches = np.array_split(np.arange(total), count)
    min_gap = max(1, total // count // 2)
    picks: list[int] = []
    for stretch in stretches:
        allowed = stretch[stretch >= picks[-1] + min_gap] if picks else stretch
        if len(allowed):
            picks.append(int(allowed[np.argmax(scores[allowed])]))
    kept = []
    for i, frame in enumerate(picks):
        around = [scores[p] for p in picks[max(0, i - NEIGHBOURS):i + NEIGHBOURS + 1] if p != frame]
        if not around or scores[frame] >= BLUR_DROP_RATIO * float(np.median(around)):
            kept.append(frame)
    return kept, len(picks) - len(kept)


def extract_frames(video: Path, images_dir: Path, *, count: int, rate: float | None, max_side: int,
                   reporter: StageReporter) -> VideoFrames:
    """Score, choose and write frames of ``video`` into ``images_dir`` as ``frame_<index>.jpg``."""
    scores, fps = _score(video, reporter)
    if len(scores) < MIN_FRAMES:
        raise failed("frames", f"{video} has {len(scores)} decodable frame(s)",
                     f"A video needs at least {MIN_FRAMES} frames that decode: check that it plays, or re-export "
                     "it as H.264 MP4")
    if rate is not None:
        count = max(MIN_FRAMES, round(len(scores) / fps * rate))
    chosen, dropped = choose_frames(np.asarray(scores), count)
    reporter.log(f"{video.name}: {len(scores)} frames at {fps:.2f} fps; keeping {len(chosen)}, the sharpest of "
                 f"evenly spaced stretches ({dropped} dropped as blurred)")
    images_dir.mkdir(parents=True, exist_ok=True)
    wanted, names = set(chosen), []
    progress = StageProgress(reporter, "frames", len(chosen))
    for index, frame in _frames(video):
        check_cancel(reporter)
        if index in wanted:
            image = upright(frame.to_image(), frame.rotation)
            scale = min(1.0, max_side / max(image.size))
            if scale < 1.0:
                image = image.resize((round(image.width * scale), round(image.height * scale)))
            name = f"frame_{index:06d}.jpg"
            image.save(images_dir / name, quality=95)
            names.append(name)
            progress.update(len(names))
        if index >= chosen[-1]:
            break
    return VideoFrames(names, len(scores), dropped, fps)


def _score(video: Path, reporter: StageReporter) -> tuple[list[float], float]:
    scores: list[float] = []
    with _open(video) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        expected = stream.frames or max(1, math.ceil(float(stream.duration * stream.time_base) * fps)
                                        if stream.duration else 1)
    progress = StageProgress(reporter, "frames", expected)
    for index, frame in _frames(video):
        check_cancel(reporter)
        scale = min(1.0, SCORE_SIDE / max(frame.width, frame.height))
        small = frame.reformat(width=max(8, round(frame.width * scale)), height=max(8, round(frame.height * scale)),
                               format="gray")
        scores.append(sharpness(small.to_ndarray()))
        if index % 10 == 0:
            progress.update(min(index + 1, expected))
    return scores, fps


def _open(video: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(video))
    except (av.error.FFmpegError, OSError) as exc:
        raise failed("frames", f"{video} does not open as a video ({exc})",
                     "Use an MP4, MOV or MKV file (H.264/H.265), or a folder of photos") from None
    if not container.streams.video:
        container.close()
        raise failed("frames", f"{video} holds no video stream", "Choose a video file with picture, or photos")
    return container


def _frames(video: Path) -> Iterator[tuple[int, av.VideoFrame]]:
    """Every frame that decodes, numbered in order; a stream whose codec this FFmpeg lacks fails naming it."""
    with _open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                yield index, frame
                index += 1
        except av.error.DecoderNotFoundError:
            raise failed("frames", f"{video}: no decoder for its codec {stream.codec_context.name!r}",
                         "Re-export the video as H.264 MP4") from None
        except av.error.FFmpegError as exc:
            if index == 0:
                raise failed("frames", f"{video}: no frame decodes ({exc})",
                             "Check that the video plays; re-export it as H.264 MP4") from None
            # a damaged tail: keep the frames that decoded before it
