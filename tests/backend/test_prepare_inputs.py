"""What goes into Structure-from-Motion, without running it: frame choice, image pairs, and every input the
pipeline must refuse with a message naming the file and what to do."""
from __future__ import annotations

import io

import av
import numpy as np
import pycolmap
import pytest
from PIL import Image

from carrara.backend.prepare import pairs, photos, video
from carrara.backend.prepare.pipeline import find_input, prepare
from carrara.backend.prepare.progress import PrepareFailed
from carrara.shared.jobs import DatasetRef, PrepareConfig
from sfm_inputs import RecordingReporter, chair_photos


def test_choose_frames_takes_the_sharpest_of_each_stretch():
    scores = np.array([1, 9, 1, 1, 8, 1, 2, 7, 2, 1, 10, 1], float)     # sharp frames at 1, 4, 7, 10
    assert video.choose_frames(scores, 4) == ([1, 4, 7, 10], 0)


def test_choose_frames_never_puts_two_picks_side_by_side_at_a_stretch_boundary():
    scores = np.array([1, 1, 1, 9, 9, 6, 1, 1], float)
    chosen, _ = video.choose_frames(scores, 2)
    assert chosen == [3, 5]


def test_choose_frames_drops_a_pick_far_blurrier_than_its_neighbours():
    scores = np.array([10, 11, 12, 0.5, 10, 11, 12, 10], float)         # the fourth stretch is all motion blur
    scores = np.repeat(scores, 3)
    chosen, dropped = video.choose_frames(scores, 8)
    assert dropped == 1 and len(chosen) == 7 and not any(9 <= c < 12 for c in chosen)


def test_sharpness_ranks_a_blurred_copy_below_the_original():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (64, 64)).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(sharp).resize((16, 16)).resize((64, 64), Image.Resampling.BILINEAR))
    assert video.sharpness(sharp) > 10 * video.sharpness(blurred)


def test_sequential_pairs_hold_the_neighbours_and_close_the_loop():
    names = [f"frame_{i:04d}.jpg" for i in range(200)]
    chosen = pairs.image_pairs(names, "sequential")
    assert len(chosen) == len(set(chosen)) and all(a < b for a, b in chosen)
    assert ("frame_0000.jpg", "frame_0010.jpg") in chosen and ("frame_0000.jpg", "frame_0011.jpg") not in chosen
    assert ("frame_0000.jpg", "frame_0199.jpg") in chosen           # first and last keyframes: the loop
    assert len(chosen) < len(names) * (len(names) - 1) / 2 / 4      # far fewer than exhaustive's 19,900
    assert len(pairs.image_pairs(names[:10], "exhaustive")) == 45


@pytest.mark.parametrize("from_video, count, expected", [(True, 20, "sequential"), (False, 20, "exhaustive"),
                                                         (False, pairs.EXHAUSTIVE_MAX_PHOTOS + 1, "sequential")])
def test_auto_matcher_follows_the_input(from_video, count, expected):
    assert pairs.choose_matcher("auto", from_video, count) == expected
    assert pairs.choose_matcher("exhaustive", True, 500) == "exhaustive"


def _prepare(source, tmp_path, reporter=None, **settings):
    config = PrepareConfig(dataset=DatasetRef(path=str(source)), **settings)
    return prepare(source, tmp_path / "dataset", tmp_path / "work", config, reporter or RecordingReporter())


def test_a_folder_of_non_images_fails_naming_what_it_holds(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(PrepareFailed, match=r"photos: .*notes holds no photos .*readme.txt, scan.pdf.*Choose"):
        _prepare(folder, tmp_path)


def test_fewer_than_three_usable_photos_fail_and_the_corrupt_one_is_named(tmp_path):
    folder = chair_photos(tmp_path / "photos", 2)
    good = (folder / "r_95.png").read_bytes()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + good[:300])
    reporter = RecordingReporter()
    with pytest.raises(PrepareFailed, match=r"only 2 of the 3 photos .*1 do not decode.*at least 3"):
        _prepare(folder, tmp_path, reporter)
    assert any("broken.jpg: skipped" in line for line in reporter.lines("warning"))


def test_a_truncated_jpeg_among_good_photos_is_skipped_and_named(tmp_path):
    folder = chair_photos(tmp_path / "photos", 3)
    buffer = io.BytesIO()
    Image.open(folder / "r_95.png").convert("RGB").save(buffer, "JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    reporter = RecordingReporter()
    result = photos.import_photos(folder, tmp_path / "images", 400, reporter)
    assert result.names == ["r_2.png", "r_25.png", "r_95.png"] and list(result.skipped) == [str(folder / "cut.jpg")]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == result.names
    assert any("cut.jpg: skipped, it does not decode" in line for line in reporter.lines("warning"))


def test_photos_larger_than_the_limit_are_scaled_and_keep_their_exif_focal(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28          # FocalLengthIn35mmFilm
    for i in range(3):
        Image.new("RGB", (800, 600), (i, 0, 0)).save(folder / f"p{i}.jpg", exif=exif.tobytes())
    result = photos.import_photos(folder, tmp_path / "images", 400, RecordingReporter())
    assert result.with_focal_prior == 3 and result.camera_groups() == [["p0.jpg", "p1.jpg", "p2.jpg"]]
    with Image.open(tmp_path / "images" / "p0.jpg") as scaled:
        assert scaled.size == (400, 300) and scaled.getexif().get_ifd(0x8769)[0xA405] == 28


def test_a_file_that_is_not_a_video_fails_naming_it(tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(np.random.default_rng(1).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(PrepareFailed, match=r"frames: .*holiday.mp4 does not open as a video.*H.264"):
        _prepare(fake, tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(PrepareFailed, match=r"input: .*notes.txt is not a video"):
        _prepare(text, tmp_path)


def test_a_video_whose_frames_do_not_decode_fails_naming_it(tmp_path):
    clip = tmp_path / "damaged.mp4"
    rng = np.random.default_rng(2)
    with av.open(str(clip), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), np.uint8),
                                                                   format="rgb24")))
        container.mux(stream.encode(None))
    data = bytearray(clip.read_bytes())
    start = data.find(b"mdat") + 4                      # the coded frames: zeroed, as on a damaged card
    end = start - 8 + int.from_bytes(data[start - 8:start - 4], "big")
    data[start:end] = bytes(end - start)
    clip.write_bytes(bytes(data))
    with pytest.raises(PrepareFailed, match=r"frames: .*damaged.mp4: no frame decodes.*re-export it as H.264"):
        _prepare(clip, tmp_path)


def test_a_video_file_without_picture_fails_naming_it(tmp_path):
    sound = tmp_path / "voice.mkv"
    with av.open(str(sound), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(PrepareFailed, match=r"frames: .*voice.mkv holds no video stream"):
        _prepare(sound, tmp_path)


def test_an_upload_folder_holding_one_video_is_read_as_that_video(tmp_path):
    (tmp_path / "clip.mov").write_bytes(b"x")
    assert find_input(tmp_path) == ("video", tmp_path / "clip.mov")
    (tmp_path / "other.mp4").write_bytes(b"x")
    with pytest.raises(PrepareFailed, match="holds 2 videos"):
        find_input(tmp_path)


def test_an_output_folder_holding_other_files_is_refused(tmp_path):
    folder = chair_photos(tmp_path / "photos", 3)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "thesis.docx").write_text("precious")
    with pytest.raises(PrepareFailed, match="output: .*already holds files that are not a prepared dataset"):
        _prepare(folder, tmp_path)
    assert (tmp_path / "dataset" / "thesis.docx").read_text() == "precious"


@pytest.mark.skipif(pycolmap.has_cuda, reason="this pycolmap has CUDA: GPU SIFT is available")
def test_gpu_sift_asked_for_without_a_cuda_build_says_what_to_install(tmp_path):
    folder = chair_photos(tmp_path / "photos", 3)
    with pytest.raises(PrepareFailed, match="features: .*no CUDA.*pycolmap-cuda12"):
        _prepare(folder, tmp_path, device="cuda")
