"""Portrait phone videos: the stream's display rotation (written here with PyAV, as phones write it) is applied to
the frames the video reader writes, so the photos SfM sees are upright."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from carrara.backend.prepare.video import extract_frames, upright
from sfm_inputs import RecordingReporter

STORED_W, STORED_H = 96, 64          # the pixels as the camera stores them (landscape)
BAND = 16                            # a white band along the stored frame's left edge


def _stored_frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = (rng.random((STORED_H, STORED_W, 3)) * 80).astype(np.uint8)      # dark texture: frames score as sharp
    frame[:, :BAND] = 255
    return frame


def _rotated_video(path: Path, rotation_deg: int, count: int = 6) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = STORED_W, STORED_H, "yuv420p"
        stream.set_display_rotation(rotation_deg)          # what a phone held upright writes
        for index in range(count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(_stored_frame(index), format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("rotation_deg, band_side", [(90, "bottom"), (-90, "top"), (180, "right"), (0, "left")])
def test_frames_of_a_rotated_video_are_written_upright(tmp_path, rotation_deg, band_side):
    video = _rotated_video(tmp_path / "portrait.mp4", rotation_deg)
    with av.open(str(video)) as container:             # the tag really is in the file, as a reader sees it
        assert next(container.decode(video=0)).rotation % 360 == rotation_deg % 360     # 180 reads as -180
    frames = extract_frames(video, tmp_path / "images", count=3, rate=None, max_side=1600,
                            reporter=RecordingReporter())
    assert len(frames.names) == 3
    for name in frames.names:
        with Image.open(tmp_path / "images" / name) as written:
            pixels = np.asarray(written.convert("L"), np.float32)
        quarter_turned = rotation_deg % 180 != 0
        assert pixels.shape == ((STORED_W, STORED_H) if quarter_turned else (STORED_H, STORED_W))
        edges = {"top": pixels[:BAND // 2], "bottom": pixels[-(BAND // 2):],
                 "left": pixels[:, :BAND // 2], "right": pixels[:, -(BAND // 2):]}
        assert edges[band_side].mean() > 200, (band_side, {k: float(v.mean()) for k, v in edges.items()})
        assert all(v.mean() < 120 for k, v in edges.items() if k != band_side)


def test_upright_turns_counter_clockwise_by_the_display_rotation_in_quarter_turns():
    stored = np.arange(12, dtype=np.uint8).reshape(3, 4)
    image = Image.fromarray(stored)
    for rotation_deg, turns in ((0, 0), (90, 1), (180, 2), (-180, 2), (-90, 3), (270, 3), (89.6, 1)):
        assert np.array_equal(np.asarray(upright(image, rotation_deg)), np.rot90(stored, turns)), rotation_deg
