"""COLMAP sparse models, binary and text, read and written with numpy: the one COLMAP parser Carrara has.

It runs inside Blender (stdlib + numpy only, no pycolmap). A million points are parsed without a Python object per
point: binary records are located with one tight scan of their track lengths and then cut out of the file with
masks; text is parsed by numpy's C number parser. Models written by COLMAP >= 3.12 / pycolmap 4 add ``rigs`` and
``frames`` files; ``images`` still holds each registered image's composed camera-from-world pose, so those two
files are not needed to read one, and ``write_model`` writes the trivial rig and frame files COLMAP itself writes
for single-camera rigs, so that pycolmap never pairs our images with stale rigs.

Every problem raises ``ColmapError`` naming the file and what is wrong with it.
"""
from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np

from .camera_models import MODELS_BY_ID, MODELS_BY_NAME
from .reconstruction import Camera, Image, Points3D, Reconstruction

MODEL_FILES = ("cameras", "images", "points3D")
#: The extensions of a binary and a text model, the binary one preferred.
MODEL_EXTENSIONS = (".bin", ".txt")
#: Written by COLMAP >= 3.12 beside the three model files; this reader does not need them.
RIG_FILES = ("rigs", "frames")
_SENSOR_TYPE_CAMERA = 0
_MAX_IMAGE_SIDE = 1 << 20            # a width or height beyond this means a corrupt cameras file
_NAME_SAMPLE = 20                    # image names checked when looking for the photos folder

# A points3D.bin record starts with this fixed part, then track_length x (image_id u32, point2D_idx u32).
_POINT_HEAD = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8"), ("track_length", "<u8")])
_TRACK_ELEMENT = np.dtype([("image_id", "<u4"), ("point2d_idx", "<u4")])
_CAMERA_HEAD = struct.Struct("<IiQQ")
_IMAGE_HEAD = struct.Struct("<I4d3dI")
_U64 = struct.Struct("<Q")


class ColmapError(ValueError):
    """A COLMAP model that cannot be used; the message names the file and the problem."""


# --------------------------------------------------------------------------------------------------- locating


def find_model_dir(path: str | Path) -> tuple[Path, str]:
    """The folder holding the model and its extension (".bin" preferred over ".txt").

    Accepts the model folder itself, a file in it, ``sparse/``, or a workspace root whose model is in ``sparse/``
    or ``sparse/<n>/`` (with several sub-models, the one with the largest images file: the most registered photos).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ColmapError(f"{path}: no such file or folder")
    if path.is_file():
        path = path.parent
    candidates = [path, path / "sparse"]
    candidates += _numbered_submodels(path / "sparse")
    candidates += _numbered_submodels(path)
    for folder in candidates:
        found = _model_extension(folder)
        if found is not None:
            return folder, found
    raise ColmapError(f"{path}: no COLMAP model found (looked for cameras, images and points3D .bin or .txt "
                      f"there, in sparse/ and in sparse/<n>/)")


def _list_dir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except OSError as error:
        raise ColmapError(f"{folder}: cannot read the folder ({error.strerror or error})") from None


def _model_extension(folder: Path, strict: bool = True) -> str | None:
    """".bin" or ".txt" when ``folder`` holds a whole model; a partial one is an error naming the missing file
    (``strict``) or is passed over (when choosing among numbered sub-models)."""
    names = set(_list_dir(folder))
    present = {ext: [f"{stem}{ext}" in names for stem in MODEL_FILES] for ext in MODEL_EXTENSIONS}
    for ext, found in present.items():
        if all(found):
            return ext
    for ext, found in present.items():
        if strict and any(found):
            missing = [f"{stem}{ext}" for stem, ok in zip(MODEL_FILES, found) if not ok]
            raise ColmapError(f"{folder / missing[0]}: missing; a COLMAP model needs "
                              f"{', '.join(s + ext for s in MODEL_FILES)} together")
    return None


def _numbered_submodels(folder: Path) -> list[Path]:
    subs = [folder / n for n in _list_dir(folder) if n.isdigit() and (folder / n).is_dir()]
    found = {sub: _model_extension(sub, strict=False) for sub in subs}
    whole = [sub for sub, ext in found.items() if ext is not None]
    # The largest images file holds the most registered photos.
    return sorted(whole, key=lambda s: (-(s / f"images{found[s]}").stat().st_size, int(s.name)))


def find_images_dir(model_dir: Path, image_names: list[str], workspace: Path | None = None) -> Path | None:
    """The folder the image names are relative to: an ``images/`` next to the model or up to three levels above.

    The folder with the most sampled names present wins; None when no candidate holds any of the photos.
    """
    sample = image_names[:: max(1, len(image_names) // _NAME_SAMPLE)][:_NAME_SAMPLE]
    candidates = [] if workspace is None else [workspace / "images", workspace]
    folder = model_dir
    for _ in range(4):
        candidates += [folder / "images"]
        folder = folder.parent
    best, best_hits = None, 0
    for candidate in candidates:
        if candidate.is_dir():
            hits = sum((candidate / name).is_file() for name in sample)
            if hits > best_hits:
                best, best_hits = candidate, hits
    return best


# ---------------------------------------------------------------------------------------------------- reading


def read_model(path: str | Path) -> Reconstruction:
    """Read a COLMAP sparse model (binary or text) from a model folder, ``sparse/``, ``sparse/0`` or a workspace.

    Sets ``model_dir`` to the folder read and ``images_dir`` to where the photos are, when found.
    """
    model_dir, ext = find_model_dir(path)
    files = {stem: model_dir / f"{stem}{ext}" for stem in MODEL_FILES}
    if ext == ".bin":
        cameras = _read_cameras_binary(files["cameras"])
        images = _read_images_binary(files["images"])
        points = _read_points3d_binary(files["points3D"])
    else:
        cameras = _read_cameras_text(files["cameras"])
        images = _read_images_text(files["images"])
        points = _read_points3d_text(files["points3D"])
    _check_model(cameras, images, points, files)
    rec = Reconstruction(cameras=cameras, images=images, points=points, model_dir=model_dir)
    given = Path(path).expanduser()
    workspace = given if given.is_dir() and given != model_dir else None
    rec.images_dir = find_images_dir(model_dir, [im.name for im in images.values()], workspace)
    return rec


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ColmapError(f"{path}: cannot read ({error.strerror or error})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ColmapError(f"{path}: not a UTF-8 text file (byte {error.start}); is it a binary model "
                          f"renamed to .txt?") from None
    except OSError as error:
        raise ColmapError(f"{path}: cannot read ({error.strerror or error})") from None


def _truncated(path: Path, what: str, offset: int, size: int, have: int) -> ColmapError:
    return ColmapError(f"{path}: truncated or corrupt: {what} needs {size} bytes at byte {offset}, "
                       f"but the file has {have} bytes")


def _count(buf: bytes, path: Path, record_size_min: int) -> int:
    if len(buf) < 8:
        raise _truncated(path, "the record count", 0, 8, len(buf))
    count = _U64.unpack_from(buf, 0)[0]
    if count * record_size_min > len(buf) - 8:
        raise ColmapError(f"{path}: truncated or corrupt: it announces {count} records, more than its "
                          f"{len(buf)} bytes can hold")
    return count


def _read_cameras_binary(path: Path) -> dict[int, Camera]:
    buf = _read_bytes(path)
    count = _count(buf, path, _CAMERA_HEAD.size)
    cameras: dict[int, Camera] = {}
    offset = 8
    for _ in range(count):
        if offset + _CAMERA_HEAD.size > len(buf):
            raise _truncated(path, f"camera record {len(cameras) + 1}", offset, _CAMERA_HEAD.size, len(buf))
        camera_id, model_id, width, height = _CAMERA_HEAD.unpack_from(buf, offset)
        offset += _CAMERA_HEAD.size
        model = MODELS_BY_ID.get(model_id)
        if model is None:
            raise ColmapError(f"{path}: camera {camera_id} has unknown camera model id {model_id} (COLMAP "
                              f"defines ids 0-{max(MODELS_BY_ID)}); the file is corrupt or from an unknown "
                              f"COLMAP version")
        size = 8 * model.num_params
        if offset + size > len(buf):
            raise _truncated(path, f"the parameters of camera {camera_id}", offset, size, len(buf))
        params = np.frombuffer(buf, "<f8", model.num_params, offset).astype(np.float64)
        offset += size
        _add_camera(cameras, Camera(camera_id, model.name, int(width), int(height), params), path)
    _expect_end(buf, offset, path)
    return cameras


def _add_camera(cameras: dict[int, Camera], camera: Camera, path: Path) -> None:
    if camera.camera_id in cameras:
        raise ColmapError(f"{path}: camera id {camera.camera_id} appears twice")
    if not (0 < camera.width <= _MAX_IMAGE_SIDE and 0 < camera.height <= _MAX_IMAGE_SIDE):
        raise ColmapError(f"{path}: camera {camera.camera_id} has an impossible size "
                          f"{camera.width}x{camera.height}")
    if not np.all(np.isfinite(camera.params)):
        raise ColmapError(f"{path}: camera {camera.camera_id} has NaN or infinite parameters {camera.params}")
    cameras[camera.camera_id] = camera


def _expect_end(buf: bytes, offset: int, path: Path) -> None:
    if offset != len(buf):
        raise ColmapError(f"{path}: corrupt: {len(buf) - offset} unexpected bytes after the last record")


def _read_images_binary(path: Path) -> dict[int, Image]:
    buf = _read_bytes(path)
    count = _count(buf, path, _IMAGE_HEAD.size + 9)
    images: dict[int, Image] = {}
    offset = 8
    for _ in range(count):
        if offset + _IMAGE_HEAD.size > len(buf):
            raise _truncated(path, f"image record {len(images) + 1}", offset, _IMAGE_HEAD.size, len(buf))
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = _IMAGE_HEAD.unpack_from(buf, offset)
        offset += _IMAGE_HEAD.size
        end = buf.find(b"\0", offset)
        if end < 0:
            raise _truncated(path, f"the name of image {image_id}", offset, len(buf) - offset + 1, len(buf))
        name = _decode_name(buf[offset:end], path, image_id)
        offset = end + 1
        if offset + 8 > len(buf):
            raise _truncated(path, f"the observation count of image {image_id}", offset, 8, len(buf))
        num_points2d = _U64.unpack_from(buf, offset)[0]
        offset += 8
        size = 24 * num_points2d
        if offset + size > len(buf):
            raise _truncated(path, f"the {num_points2d} observations of image {image_id} ({name!r})",
                             offset, size, len(buf))
        # Each observation is x, y (f8) and a point3D id (u64, 2^64-1 = none, which reads as -1 in i8).
        xys = np.frombuffer(buf, "<f8", 3 * num_points2d, offset).reshape(-1, 3)[:, :2].copy()
        ids = np.frombuffer(buf, "<i8", 3 * num_points2d, offset).reshape(-1, 3)[:, 2].copy()
        offset += size
        image = Image(image_id, name, camera_id, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), xys, ids)
        _add_image(images, image, path)
    _expect_end(buf, offset, path)
    return images


def _decode_name(raw: bytes, path: Path, image_id: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ColmapError(f"{path}: the name of image {image_id} is not UTF-8 text; the file is corrupt") from None


def _add_image(images: dict[int, Image], image: Image, path: Path) -> None:
    if image.image_id in images:
        raise ColmapError(f"{path}: image id {image.image_id} appears twice")
    if not (np.all(np.isfinite(image.qvec)) and np.all(np.isfinite(image.tvec))):
        raise ColmapError(f"{path}: image {image.image_id} ({image.name!r}) has a NaN or infinite pose")
    if not 0.5 < np.linalg.norm(image.qvec) < 2.0:
        raise ColmapError(f"{path}: image {image.image_id} ({image.name!r}) has a rotation quaternion of length "
                          f"{np.linalg.norm(image.qvec):.3g}, not 1; the file is corrupt")
    if not np.all(np.isfinite(image.xys)):
        raise ColmapError(f"{path}: image {image.image_id} ({image.name!r}) has NaN or infinite 2D points")
    images[image.image_id] = image


def _read_points3d_binary(path: Path) -> Points3D:
    buf = _read_bytes(path)
    count = _count(buf, path, _POINT_HEAD.itemsize)
    starts = _point_record_starts(buf, count, path)
    in_track = _track_byte_mask(np.diff(np.append(starts, len(buf))) - _POINT_HEAD.itemsize)
    data = np.frombuffer(buf, np.uint8)
    heads = data[~in_track].view(_POINT_HEAD)
    in_track[:8] = False
    tracks = data[in_track].view(_TRACK_ELEMENT)
    offsets = np.zeros(count + 1, np.int64)
    np.cumsum(heads["track_length"], out=offsets[1:])
    points = Points3D(
        ids=heads["id"].astype(np.int64),
        xyz=heads["xyz"].astype(np.float64),
        rgb=heads["rgb"].copy(),
        error=heads["error"].astype(np.float64),
        track_offsets=offsets,
        track_image_ids=tracks["image_id"].astype(np.int64),
        track_point2d_idx=tracks["point2d_idx"].astype(np.int64),
    )
    return points


def _track_byte_mask(track_bytes: np.ndarray) -> np.ndarray:
    """True on the bytes of a points3D.bin that belong to tracks, and on the 8-byte record count.

    The file is: count, then per point a fixed head followed by its track; so the mask is a run-length pattern.
    """
    pattern = np.zeros(2 * len(track_bytes) + 1, bool)
    pattern[0::2] = True
    runs = np.empty(2 * len(track_bytes) + 1, np.int64)
    runs[0] = 8
    runs[1::2] = _POINT_HEAD.itemsize
    runs[2::2] = track_bytes
    return np.repeat(pattern, runs)


def _point_record_starts(buf: bytes, count: int, path: Path) -> np.ndarray:
    """Byte offset of every points3D.bin record: one scan of the track lengths (records have variable size)."""
    unpack = _U64.unpack_from
    length_at = _POINT_HEAD.fields["track_length"][1]
    head = _POINT_HEAD.itemsize
    starts: list[int] = []
    append = starts.append
    offset = 8
    try:
        for _ in range(count):
            append(offset)
            offset += head + 8 * unpack(buf, offset + length_at)[0]
    except struct.error:
        raise _truncated(path, f"point record {len(starts)}", starts[-1], head, len(buf)) from None
    if offset > len(buf):
        raise _truncated(path, f"the track of point record {count}", starts[-1], offset - starts[-1], len(buf))
    _expect_end(buf, offset, path)
    return np.array(starts, np.int64)


# Text: comment lines start with '#'; numbers are whitespace-separated.
_COMMENT_LINE = re.compile(rb"^[ \t]*#[^\n]*", re.MULTILINE)


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for every line that is not a comment."""
    return [(i + 1, line) for i, line in enumerate(text.split("\n")) if not line.lstrip().startswith("#")]


def _numbers(text: str | bytes, path: Path, where: str) -> np.ndarray:
    """Every number in ``text``, parsed in C; a token that is not a number is an error naming it."""
    if not text or text.isspace():
        return np.zeros(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = np.fromstring(text, dtype=np.float64, sep=" ")
        except ValueError:
            values, caught = np.zeros(0), [True]
    if caught:  # numpy stops at the first token it cannot read, and warns
        tokens = text.split()
        bad = tokens[len(values)] if len(values) < len(tokens) else tokens[-1]
        raise ColmapError(f"{path}: {where}: {bad!r} is not a number")
    return values


def _tokens_per_line(raw: np.ndarray) -> np.ndarray:
    """How many whitespace-separated tokens each line of ``raw`` (bytes as uint8) holds, without splitting it."""
    newline = raw == 10
    space = newline | (raw == 32) | (raw == 9) | (raw == 13)
    start = ~space
    start[1:] &= space[:-1]
    boundaries = np.append(np.flatnonzero(newline), len(raw))
    return np.diff(np.searchsorted(np.flatnonzero(start), boundaries), prepend=0)


def _read_cameras_text(path: Path) -> dict[int, Camera]:
    cameras: dict[int, Camera] = {}
    for line_no, line in _data_lines(_read_text(path)):
        parts = line.split()
        if not parts:
            continue
        where = f"line {line_no}"
        if len(parts) < 4:
            raise ColmapError(f"{path}: {where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {line!r}")
        model = MODELS_BY_NAME.get(parts[1])
        if model is None:
            raise ColmapError(f"{path}: {where}: unknown camera model {parts[1]!r} (known: "
                              f"{', '.join(MODELS_BY_NAME)})")
        camera_id, width, height = _integers(parts[0:1] + parts[2:4], path, where)
        params = _numbers(" ".join(parts[4:]), path, where)
        if len(params) != model.num_params:
            raise ColmapError(f"{path}: {where}: camera {camera_id} is {model.name}, which has "
                              f"{model.num_params} parameters ({', '.join(model.param_names)}), not {len(params)}")
        _add_camera(cameras, Camera(camera_id, model.name, width, height, params), path)
    return cameras


def _integers(tokens: list[str], path: Path, where: str) -> list[int]:
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise ColmapError(f"{path}: {where}: expected whole numbers, got {' '.join(tokens)!r}") from None


def _read_images_text(path: Path) -> dict[int, Image]:
    lines = _data_lines(_read_text(path))
    if lines and not lines[-1][1].strip():
        lines = lines[:-1]  # the newline that ends the file
    if len(lines) % 2:
        # Tolerate a file whose last image has its (empty) observation line missing altogether.
        lines.append((lines[-1][0] + 1, ""))
    images: dict[int, Image] = {}
    for (line_no, header), (obs_no, observations) in zip(lines[0::2], lines[1::2]):
        parts = header.split(maxsplit=9)
        if not parts:
            continue
        if len(parts) < 10:
            raise ColmapError(f"{path}: line {line_no}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, "
                              f"got {header!r}")
        image_id, camera_id = _integers([parts[0], parts[8]], path, f"line {line_no}")
        pose = _numbers(" ".join(parts[1:8]), path, f"line {line_no}")
        values = _numbers(observations, path, f"line {obs_no}")
        if len(values) % 3:
            raise ColmapError(f"{path}: line {obs_no}: observations of image {image_id} must be X Y POINT3D_ID "
                              f"triples, but there are {len(values)} numbers")
        values = values.reshape(-1, 3)
        image = Image(image_id, parts[9].rstrip("\r"), camera_id, pose[:4].copy(), pose[4:].copy(),
                      values[:, :2].copy(), values[:, 2].astype(np.int64))
        _add_image(images, image, path)
    return images


def _read_points3d_text(path: Path) -> Points3D:
    data = bytearray(_read_bytes(path))
    for match in _COMMENT_LINE.finditer(data):  # blank comments in place so line numbers stay true
        data[match.start():match.end()] = b" " * (match.end() - match.start())
    per_line = _tokens_per_line(np.frombuffer(data, np.uint8))
    line_numbers = np.flatnonzero(per_line) + 1
    counts = per_line[per_line > 0]
    bad = np.nonzero((counts < 8) | ((counts - 8) % 2 == 1))[0]
    if len(bad):
        raise ColmapError(f"{path}: line {line_numbers[bad[0]]}: a point must be POINT3D_ID X Y Z R G B ERROR "
                          f"followed by IMAGE_ID POINT2D_IDX pairs, but it has {counts[bad[0]]} values")
    values = _numbers(bytes(data), path, "points")
    starts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    head = np.zeros(len(values), bool)
    for k in range(8):
        head[starts + k] = True
    track = values[~head].reshape(-1, 2)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum((counts - 8) // 2, out=offsets[1:])
    rgb = values[starts[:, None] + np.arange(4, 7)]
    if np.any((rgb < 0) | (rgb > 255)):
        line = line_numbers[np.nonzero(((rgb < 0) | (rgb > 255)).any(1))[0][0]]
        raise ColmapError(f"{path}: line {line}: point colours must be 0-255")
    return Points3D(
        ids=values[starts].astype(np.int64),
        xyz=values[starts[:, None] + np.arange(1, 4)],
        rgb=rgb.astype(np.uint8),
        error=values[starts + 7],
        track_offsets=offsets,
        track_image_ids=track[:, 0].astype(np.int64),
        track_point2d_idx=track[:, 1].astype(np.int64),
    )


def _check_model(cameras: dict[int, Camera], images: dict[int, Image], points: Points3D,
                 files: dict[str, Path]) -> None:
    """Cross-file consistency: what each file names must exist in the others."""
    if not cameras:
        raise ColmapError(f"{files['cameras']}: no cameras: the model is empty")
    if not images:
        raise ColmapError(f"{files['images']}: no registered images: the model is empty")
    for image in images.values():
        if image.camera_id not in cameras:
            raise ColmapError(f"{files['images']}: image {image.image_id} ({image.name!r}) names camera "
                              f"{image.camera_id}, which {files['cameras'].name} does not define")
    path = files["points3D"]
    if not np.all(np.isfinite(points.xyz)) or not np.all(np.isfinite(points.error)):
        bad = int(np.nonzero(~np.isfinite(points.xyz).all(1) | ~np.isfinite(points.error))[0][0])
        raise ColmapError(f"{path}: point {points.ids[bad]} has NaN or infinite coordinates or error")
    ids = np.sort(points.ids)
    if len(ids) and np.any(ids[1:] == ids[:-1]):
        raise ColmapError(f"{path}: point id {ids[1:][ids[1:] == ids[:-1]][0]} appears twice")
    if not len(points.track_image_ids):
        return
    image_ids = np.array(sorted(images), np.int64)
    num_points2d = np.array([len(images[i].xys) for i in image_ids], np.int64)
    where = _index_of(image_ids, points.track_image_ids)
    unknown = image_ids[where] != points.track_image_ids
    if np.any(unknown):
        element = int(np.nonzero(unknown)[0][0])
        point = points.ids[np.searchsorted(points.track_offsets, element, side="right") - 1]
        raise ColmapError(f"{path}: point {point} is observed in image {points.track_image_ids[element]}, which "
                          f"{files['images'].name} does not define")
    beyond = points.track_point2d_idx >= num_points2d[where]
    if np.any(beyond | (points.track_point2d_idx < 0)):
        element = int(np.nonzero(beyond | (points.track_point2d_idx < 0))[0][0])
        point = points.ids[np.searchsorted(points.track_offsets, element, side="right") - 1]
        raise ColmapError(f"{path}: point {point} names observation {points.track_point2d_idx[element]} of image "
                          f"{points.track_image_ids[element]}, which has only {num_points2d[where[element]]}")


def _index_of(sorted_ids: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position of each query in ``sorted_ids`` (clipped; check equality after): a table when ids are small."""
    if sorted_ids[-1] < 4 * len(sorted_ids) + 1024 and queries.min() >= 0:
        table = np.zeros(max(int(sorted_ids[-1]), int(queries.max())) + 1, np.int64)
        table[sorted_ids] = np.arange(len(sorted_ids))
        return table[queries]
    return np.clip(np.searchsorted(sorted_ids, queries), 0, len(sorted_ids) - 1)


# ---------------------------------------------------------------------------------------------------- writing


def write_model(rec: Reconstruction, folder: str | Path, binary: bool = True) -> None:
    """Write ``rec`` as a COLMAP model (cameras, images, points3D, plus trivial rigs and frames) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if binary:
        outputs = {"cameras.bin": _cameras_binary(rec), "images.bin": _images_binary(rec),
                   "points3D.bin": _points3d_binary(rec.points), "rigs.bin": _rigs_binary(rec),
                   "frames.bin": _frames_binary(rec)}
        for name, data in outputs.items():
            (folder / name).write_bytes(data)
    else:
        outputs = {"cameras.txt": _cameras_text(rec), "images.txt": _images_text(rec),
                   "points3D.txt": _points3d_text(rec.points), "rigs.txt": _rigs_text(rec),
                   "frames.txt": _frames_text(rec)}
        for name, text in outputs.items():
            (folder / name).write_text(text, encoding="utf-8")


def _cameras_binary(rec: Reconstruction) -> bytes:
    parts = [_U64.pack(len(rec.cameras))]
    for camera_id in sorted(rec.cameras):
        camera = rec.cameras[camera_id]
        model = MODELS_BY_NAME[camera.model]
        params = np.asarray(camera.params, "<f8")
        if len(params) != model.num_params:
            raise ValueError(f"camera {camera_id} is {model.name} with {model.num_params} parameters, "
                             f"not {len(params)}")
        parts += [_CAMERA_HEAD.pack(camera_id, model.model_id, camera.width, camera.height), params.tobytes()]
    return b"".join(parts)


def _images_binary(rec: Reconstruction) -> bytes:
    parts = [_U64.pack(len(rec.images))]
    for image_id in sorted(rec.images):
        image = rec.images[image_id]
        observations = np.empty((len(image.xys), 3), "<f8")
        observations[:, :2] = image.xys
        observations.view("<i8")[:, 2] = image.point3d_ids
        parts += [_IMAGE_HEAD.pack(image_id, *map(float, image.qvec), *map(float, image.tvec), image.camera_id),
                  image.name.encode("utf-8") + b"\0", _U64.pack(len(observations)), observations.tobytes()]
    return b"".join(parts)


def _points3d_binary(points: Points3D) -> bytes:
    count = len(points)
    lengths = np.diff(points.track_offsets)
    heads = np.empty(count, _POINT_HEAD)
    heads["id"], heads["xyz"], heads["rgb"] = points.ids, points.xyz, points.rgb
    heads["error"], heads["track_length"] = points.error, lengths
    tracks = np.empty(len(points.track_image_ids), _TRACK_ELEMENT)
    tracks["image_id"], tracks["point2d_idx"] = points.track_image_ids, points.track_point2d_idx
    out = np.empty(8 + heads.nbytes + tracks.nbytes, np.uint8)
    in_track = _track_byte_mask(lengths * _TRACK_ELEMENT.itemsize)
    out[:8] = np.frombuffer(_U64.pack(count), np.uint8)
    out[~in_track] = heads.view(np.uint8)
    in_track[:8] = False
    out[in_track] = tracks.view(np.uint8)
    return out.tobytes()


def _rigs_binary(rec: Reconstruction) -> bytes:
    # One rig per camera, holding only that camera as its reference sensor: what COLMAP writes for plain models.
    parts = [_U64.pack(len(rec.cameras))]
    for camera_id in sorted(rec.cameras):
        parts.append(struct.pack("<IIiI", camera_id, 1, _SENSOR_TYPE_CAMERA, camera_id))
    return b"".join(parts)


def _frames_binary(rec: Reconstruction) -> bytes:
    # One frame per image; with the camera as its rig's reference sensor, rig_from_world is the image's pose.
    parts = [_U64.pack(len(rec.images))]
    for image_id in sorted(rec.images):
        image = rec.images[image_id]
        parts.append(struct.pack("<II4d3dIiIQ", image_id, image.camera_id, *map(float, image.qvec),
                                 *map(float, image.tvec), 1, _SENSOR_TYPE_CAMERA, image.camera_id, image_id))
    return b"".join(parts)


def _fmt(values) -> str:
    """Shortest text that reads back to the same float64 (Python's repr), space-separated."""
    return " ".join(repr(float(v)) for v in values)


def _cameras_text(rec: Reconstruction) -> str:
    lines = ["# Camera list with one line of data per camera:",
             "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(rec.cameras)}"]
    for camera_id in sorted(rec.cameras):
        camera = rec.cameras[camera_id]
        lines.append(f"{camera_id} {camera.model} {camera.width} {camera.height} {_fmt(camera.params)}")
    return "\n".join(lines) + "\n"


def _images_text(rec: Reconstruction) -> str:
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)",
             f"# Number of images: {len(rec.images)}"]
    for image_id in sorted(rec.images):
        image = rec.images[image_id]
        lines.append(f"{image_id} {_fmt(image.qvec)} {_fmt(image.tvec)} {image.camera_id} {image.name}")
        lines.append(" ".join(f"{float(x)!r} {float(y)!r} {int(i)}"
                              for (x, y), i in zip(image.xys.tolist(), image.point3d_ids.tolist())))
    return "\n".join(lines) + "\n"


def _points3d_text(points: Points3D) -> str:
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
             f"# Number of points: {len(points)}"]
    offsets = points.track_offsets.tolist()
    image_ids, idxs = points.track_image_ids.tolist(), points.track_point2d_idx.tolist()
    for i, (pid, xyz, rgb, err) in enumerate(zip(points.ids.tolist(), points.xyz.tolist(), points.rgb.tolist(),
                                                 points.error.tolist())):
        track = " ".join(f"{a} {b}" for a, b in zip(image_ids[offsets[i]:offsets[i + 1]],
                                                   idxs[offsets[i]:offsets[i + 1]]))
        lines.append(f"{pid} {_fmt(xyz)} {rgb[0]} {rgb[1]} {rgb[2]} {err!r} {track}".rstrip())
    return "\n".join(lines) + "\n"


def _rigs_text(rec: Reconstruction) -> str:
    lines = ["# Rig calib list with one line of data per calib:",
             "#   RIG_ID, NUM_SENSORS, REF_SENSOR_TYPE, REF_SENSOR_ID, SENSORS[] as (SENSOR_TYPE, SENSOR_ID, "
             "HAS_POSE, [QW, QX, QY, QZ, TX, TY, TZ])",
             f"# Number of rigs: {len(rec.cameras)}"]
    lines += [f"{camera_id} 1 CAMERA {camera_id}" for camera_id in sorted(rec.cameras)]
    return "\n".join(lines) + "\n"


def _frames_text(rec: Reconstruction) -> str:
    lines = ["# Frame list with one line of data per frame:",
             "#   FRAME_ID, RIG_ID, RIG_FROM_WORLD[QW, QX, QY, QZ, TX, TY, TZ], NUM_DATA_IDS, DATA_IDS[] as "
             "(SENSOR_TYPE, SENSOR_ID, DATA_ID)",
             f"# Number of frames: {len(rec.images)}"]
    for image_id in sorted(rec.images):
        image = rec.images[image_id]
        lines.append(f"{image_id} {image.camera_id} {_fmt(image.qvec)} {_fmt(image.tvec)} 1 CAMERA "
                     f"{image.camera_id} {image_id}")
    return "\n".join(lines) + "\n"
