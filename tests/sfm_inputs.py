"""Inputs for the Structure-from-Motion tests, made from data the repository ships: a short "phone video" of the
chair (its renders in order round the chair, each sharp frame between two blurred copies of itself), that video
prepared once per session, for the tests that only need a finished dataset (the Blender import), and the chair as
a COLMAP workspace whose camera has lens distortion, as COLMAP's defaults leave an artist's model."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from testkit import REPO_ROOT

CHAIR = REPO_ROOT / "examples" / "chair"
#: 20 renders at 8-50 degrees of elevation, in order of azimuth: half a turn round the chair.
CHAIR_PATH = ("r_95 r_25 r_2 r_67 r_24 r_63 r_56 r_8 r_62 r_26 r_85 r_32 r_99 r_66 r_80 r_70 r_5 r_18 r_43 "
              "r_50").split()
BLUR_RADIUS_PX = 4
_CACHE: dict[str, tuple] = {}

_spec = importlib.util.spec_from_file_location("bench_make_video", REPO_ROOT / "benchmarks" / "make_video.py")
make_video = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_video)


def chair_frames(blurred_copies: bool = True):
    """The chair renders in path order on mid grey; with ``blurred_copies``, each as blurred, sharp, blurred."""
    for name in CHAIR_PATH:
        with Image.open(CHAIR / "images" / f"{name}.png") as render:
            flat = Image.new("RGB", render.size, make_video.BACKGROUND)
            flat.paste(render, mask=render.getchannel("A"))
        if blurred_copies:
            blurred = flat.filter(ImageFilter.GaussianBlur(BLUR_RADIUS_PX))
            yield from (blurred, flat, blurred)
        else:
            yield flat


def chair_photos(folder: Path, count: int) -> Path:
    """The first ``count`` renders of the path as a folder of RGBA PNG photos."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in CHAIR_PATH[:count]:
        (folder / f"{name}.png").write_bytes((CHAIR / "images" / f"{name}.png").read_bytes())
    return folder


def distorted_chair(workspace: Path, k: float = 0.02) -> Path:
    """The bundled chair as a COLMAP workspace (``images/`` + ``sparse/0/``, written by Carrara's own writer) whose
    camera is SIMPLE_RADIAL with radial distortion ``k``: COLMAP's default model, which training refuses."""
    from carrara.shared.colmap import read_model, write_model
    rec = read_model(CHAIR)
    for camera in rec.cameras.values():
        fx, _, cx, cy = camera.params
        camera.model, camera.params = "SIMPLE_RADIAL", np.array([fx, cx, cy, k])
    write_model(rec, workspace / "sparse" / "0")
    shutil.copytree(CHAIR / "images", workspace / "images")
    return workspace


def chair_video(folder: Path) -> Path:
    """60 frames at 10 fps: frame 3k+1 is the k-th render, sharp; its neighbours are blurred."""
    path = folder / "chair.mp4"
    make_video.write_video(chair_frames(), path, fps=10)
    return path


def prepared_chair(tmp_path_factory) -> tuple[Path, "RecordingReporter"]:
    """The chair video prepared into a dataset (and what the run reported), once per session."""
    if "chair" not in _CACHE:
        from carrara.backend.prepare.pipeline import prepare
        from carrara.shared.jobs import DatasetRef, PrepareConfig
        folder = tmp_path_factory.mktemp("prepared_chair")
        video = chair_video(folder)
        config = PrepareConfig(dataset=DatasetRef(path=str(video)), frames=len(CHAIR_PATH), max_features=4096)
        reporter = RecordingReporter()
        prepare(video, folder / "dataset", folder / "work", config, reporter)
        _CACHE["chair"] = (folder / "dataset", reporter)
    return _CACHE["chair"]


class RecordingReporter:
    """A Reporter that keeps what it is told; ``cancel_when(phase, at)`` asks to stop once that phase reports
    progress ``at`` or beyond (as the artist pressing Cancel mid-stage)."""

    def __init__(self):
        self.events: list[tuple] = []
        self._cancel_at: tuple[str, int] | None = None
        self._cancelled = False

    def cancel_when(self, phase: str, at: int = 1) -> "RecordingReporter":
        self._cancel_at = (phase, at)
        return self

    def progress(self, *, iteration, total, loss, psnr, rate, eta_s, phase="train"):
        self.events.append(("progress", phase, iteration, total))
        if self._cancel_at and phase == self._cancel_at[0] and iteration >= self._cancel_at[1]:
            self._cancelled = True

    def log(self, line, level="info"):
        self.events.append(("log", level, line))

    def mesh(self, kind, mesh, iteration):
        raise AssertionError("prepare makes no meshes")

    def artifact(self, path, kind):
        self.events.append(("artifact", kind, str(path)))

    def cancelled(self) -> bool:
        return self._cancelled

    def phases(self) -> list[str]:
        """The phases that reported progress, each once, in order."""
        seen: list[str] = []
        for event in self.events:
            if event[0] == "progress" and event[1] not in seen:
                seen.append(event[1])
        return seen

    def lines(self, level: str | None = None) -> list[str]:
        return [e[2] for e in self.events if e[0] == "log" and (level is None or e[1] == level)]
