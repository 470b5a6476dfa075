"""What a client may ask the backend to do: job kinds and their configs, checked field by field.

The add-on builds these, the server validates them on ``submit`` (a bad field is a BAD_FIELD error naming it),
and the backend engine reads them. Defaults are written once, here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .protocol import ErrorCode, ProtocolError

JOB_KINDS = ("check_dataset", "reconstruct", "extract", "prepare")


@dataclass(frozen=True)
class PresetInfo:
    """A quality preset as an artist is offered it; its training settings are the backend's (train/presets.py)."""

    name: str
    label: str
    description: str


#: The quality presets, written once, in the order an artist is offered them (the add-on saves a choice by position).
PRESET_INFO = (
    PresetInfo("preview", "Preview", "About a minute on one recent GPU: shape and placement"),
    PresetInfo("standard", "Standard", "About ten minutes on one recent GPU: a finished asset"),
    PresetInfo("high", "High", "Trains until it stops improving: the most detail"),
    PresetInfo("ci", "Quick Test", "Seconds on a CPU, a coarse blob: checks the set-up end to end"),
)
PRESETS = tuple(info.name for info in PRESET_INFO)

SCENE_TYPES = ("object", "indoor", "outdoor")
DEVICES = ("auto", "cuda", "cpu")
#: Hash-grid implementations; auto takes the fastest that runs on the backend (tcnn, then triton on CUDA, then torch).
ENCODINGS = ("auto", "tcnn", "triton", "torch")
#: Longest dataset path or id a config may carry (a job's snapshot, config included, must fit one header).
MAX_PATH_CHARS = 4096
MESH_FORMATS = ("ply", "glb")
#: Faces in a delivered mesh unless asked otherwise: what Blender keeps interactive on an artist's machine.
ARTIST_FACE_BUDGET = 500_000


def _fail(name: str, problem: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FIELD, f"config field {name!r} {problem}")


@dataclass
class DatasetRef:
    """Where the photos and the model are: a folder the backend can read, or an upload it already holds."""

    path: str | None = None        # a COLMAP workspace/model folder or a transforms.json, on the backend's disk
    upload_id: str | None = None   # the id returned by ``upload_commit``

    def validate(self) -> None:
        if (self.path is None) == (self.upload_id is None):
            raise _fail("dataset", "needs exactly one of 'path' and 'upload_id'")
        for name in ("path", "upload_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS):
                raise _fail(f"dataset.{name}", f"must be a non-empty string of at most {MAX_PATH_CHARS} characters")


@dataclass
class CheckDatasetConfig:
    """Read the model, open every image, report each problem: useful before any training."""

    dataset: DatasetRef = field(default_factory=DatasetRef)

    def validate(self) -> None:
        self.dataset.validate()


@dataclass
class AssetSettings:
    """How the delivered mesh is made: shared by a reconstruction's final step and a later re-extraction."""

    # cells across the sphere for the final mesh: the detail a 2048-finest grid holds, then decimated to the budget
    mesh_resolution: int = 1024
    decimate_faces: int = ARTIST_FACE_BUDGET  # face budget for the delivered mesh; 0 keeps every face
    vertex_colors: bool = True
    texture: bool = True                   # UV atlas with the colour field baked into a PNG
    texture_size: int = 2048
    remove_floaters: bool = True
    export_formats: list[str] = field(default_factory=lambda: ["ply", "glb"])

    def validate(self) -> None:
        for name, low, high in (("mesh_resolution", 32, 4096), ("texture_size", 64, 16384)):
            value = getattr(self, name)
            if not _integer(value) or not low <= value <= high:
                raise _fail(name, f"must be a whole number from {low} to {high}")
        if not _integer(self.decimate_faces) or self.decimate_faces < 0:
            raise _fail("decimate_faces", "must be 0 (keep all) or a positive face count")
        for name in ("vertex_colors", "texture", "remove_floaters"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, "must be true or false")
        if not isinstance(self.export_formats, list) or not all(f in MESH_FORMATS for f in self.export_formats):
            raise _fail("export_formats", f"must be a list drawn from {list(MESH_FORMATS)}")


MAX_GPUS = 16       # one host's GPUs; the backend refuses more than it has


@dataclass
class ReconstructConfig(AssetSettings):
    """One reconstruction run: train an SDF inside the sphere and deliver meshes."""

    dataset: DatasetRef = field(default_factory=DatasetRef)
    sphere_center: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # input world coordinates
    sphere_radius: float = 1.0
    scene_type: str = "object"
    preset: str = "standard"
    iterations: int | None = None          # overrides the preset's count
    device: str = "auto"
    encoding: str = "auto"                 # hash-grid implementation, one of ENCODINGS
    downscale: float = 1.0                 # image downscale factor for training (>= 1)
    preview_every_s: float = 10.0          # seconds between streamed preview meshes; 0 turns them off
    preview_resolution: int = 128          # marching-cubes cells across the sphere for previews
    gpus: int = 1                          # GPUs to train on together, at most the backend's job_devices

    def validate(self) -> None:
        self.dataset.validate()
        if (not isinstance(self.sphere_center, list) or len(self.sphere_center) != 3 or
                not all(_finite_number(v) for v in self.sphere_center)):
            raise _fail("sphere_center", "must be three finite numbers")
        if not _finite_number(self.sphere_radius) or self.sphere_radius <= 0:
            raise _fail("sphere_radius", "must be a finite number above 0")
        _one_of("scene_type", self.scene_type, SCENE_TYPES)
        _one_of("preset", self.preset, PRESETS)
        _one_of("device", self.device, DEVICES)
        _one_of("encoding", self.encoding, ENCODINGS)
        if self.iterations is not None and (not _integer(self.iterations) or self.iterations < 1):
            raise _fail("iterations", "must be a whole number of at least 1")
        if not _finite_number(self.downscale) or self.downscale < 1:
            raise _fail("downscale", "must be a number of at least 1")
        if not _finite_number(self.preview_every_s) or self.preview_every_s < 0:
            raise _fail("preview_every_s", "must be 0 (off) or a positive number of seconds")
        if not _integer(self.preview_resolution) or not 16 <= self.preview_resolution <= 1024:
            raise _fail("preview_resolution", "must be a whole number from 16 to 1024")
        if not _integer(self.gpus) or not 1 <= self.gpus <= MAX_GPUS:
            raise _fail("gpus", f"must be a whole number from 1 to {MAX_GPUS} (the backend's gpu_count at most)")
        super().validate()


@dataclass
class ExtractConfig(AssetSettings):
    """Deliver the asset again from a reconstruction's latest checkpoint, e.g. at another resolution or budget."""

    source_job_id: str = ""
    device: str = "auto"

    def validate(self) -> None:
        if not isinstance(self.source_job_id, str) or not self.source_job_id or len(self.source_job_id) > 64:
            raise _fail("source_job_id", "must name the reconstruct job whose checkpoint to use")
        _one_of("device", self.device, DEVICES)
        super().validate()


# --- prepare: photos or a video in, an undistorted COLMAP dataset out (backend/prepare) ---------------------------
PREPARE_MATCHERS = ("auto", "exhaustive", "sequential")
PREPARE_MAPPERS = ("incremental", "global")
PREPARE_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")     # what prepare reads, for both sides
PREPARE_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm")


@dataclass
class PrepareConfig:
    """Structure-from-Motion on a folder of photos or a video: the PINHOLE dataset that ``reconstruct`` trains on."""

    dataset: DatasetRef = field(default_factory=DatasetRef)   # a photo folder, a video file, or an upload of either
    output_path: str | None = None     # where the dataset goes on the backend's disk; None: the job's folder
    matcher: str = "auto"              # auto: sequential for a video or a large set, exhaustive for a small one
    mapper: str = "incremental"        # chosen by measurement on the fountain (docs/photos-and-video.md)
    frames: int = 150                  # frames taken from a video (the sharpest of evenly spaced stretches)
    frame_rate: float | None = None    # frames per second of video instead of a count
    max_side: int = 1600               # longest image side in pixels; larger photos and frames are scaled down
    max_features: int = 8192           # SIFT features per image
    device: str = "auto"               # SIFT on the GPU when pycolmap has CUDA (auto), or on the CPU

    def validate(self) -> None:
        self.dataset.validate()
        if self.output_path is not None and (not isinstance(self.output_path, str) or not self.output_path):
            raise _fail("output_path", "must be a folder path, or null for the job's own folder")
        _one_of("matcher", self.matcher, PREPARE_MATCHERS)
        _one_of("mapper", self.mapper, PREPARE_MAPPERS)
        _one_of("device", self.device, DEVICES)
        for name, low, high in (("frames", 3, 5000), ("max_side", 160, 8192), ("max_features", 256, 65536)):
            value = getattr(self, name)
            if not _integer(value) or not low <= value <= high:
                raise _fail(name, f"must be a whole number from {low} to {high}")
        if self.frame_rate is not None and (not _finite_number(self.frame_rate) or not 0 < self.frame_rate <= 120):
            raise _fail("frame_rate", "must be null (use 'frames') or frames per second above 0, at most 120")


CONFIG_TYPES: dict[str, type] = {"check_dataset": CheckDatasetConfig, "reconstruct": ReconstructConfig,
                                  "extract": ExtractConfig, "prepare": PrepareConfig}


def config_to_json(config: Any) -> dict[str, Any]:
    return asdict(config)


def config_from_json(kind: str, data: Any) -> CheckDatasetConfig | ReconstructConfig | ExtractConfig:
    """Build and validate the config of a job kind; unknown or ill-typed fields raise BAD_FIELD naming them."""
    if kind not in CONFIG_TYPES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"job kind {kind!r} is not one of {list(JOB_KINDS)}")
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "body field 'config' must be an object")
    cls = CONFIG_TYPES[kind]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(unknown[0], f"is not a {kind} setting (known: {sorted(known)})")
    values = dict(data)
    if "dataset" in known:
        dataset = values.get("dataset", {})
        if not isinstance(dataset, dict) or set(dataset) - {"path", "upload_id"}:
            raise _fail("dataset", "must be an object with 'path' or 'upload_id'")
        values["dataset"] = DatasetRef(**dataset)
    config = cls(**values)
    config.validate()
    return config


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _fail(name, f"must be one of {list(allowed)}, not {value!r}")
