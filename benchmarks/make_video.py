"""Encode ordered photos as an H.264 MP4 with PyAV: how the benchmark and the tests make a "phone video" from
photo sequences taken in capture order (the fox) or rendered along a path (the chair).

    python benchmarks/make_video.py FOLDER OUT.mp4 [--fps 30] [--repeat 1] [--max-side 1920]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import av
from PIL import Image

BACKGROUND = (128, 128, 128)    # renders with alpha are composited on mid grey


def write_video(frames: Iterable[Image.Image], path: Path, fps: int = 30, crf: int = 18) -> int:
    """Write ``frames`` (PIL images of one size) to ``path``; returns the number written."""
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = None
        for image in frames:
            if image.mode == "RGBA":
                flat = Image.new("RGB", image.size, BACKGROUND)
                flat.paste(image, mask=image.getchannel("A"))
                image = flat
            image = image.convert("RGB")
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = image.width - image.width % 2, image.height - image.height % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
            frame = av.VideoFrame.from_image(image.crop((0, 0, stream.width, stream.height)))
            container.mux(stream.encode(frame))
            count += 1
        if stream is not None:
            container.mux(stream.encode(None))
    return count


def photos_in_order(folder: Path, max_side: int) -> Iterable[Image.Image]:
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        with Image.open(path) as image:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            yield image.copy()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=1, help="write each photo this many times")
    parser.add_argument("--max-side", type=int, default=1920)
    args = parser.parse_args()
    frames = (image for image in photos_in_order(args.folder, args.max_side) for _ in range(args.repeat))
    print(f"{args.out}: {write_video(frames, args.out, args.fps)} frames")
