"""The mesh that travels from the backend to Blender, and its file form (an ``.npz`` read without pickle).

Coordinates are the input dataset's world coordinates (the frame of its COLMAP model), so the add-on only
parents the mesh to the reconstruction's root Empty for it to land in place.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic_write import write_bytes_atomic


class MeshFileError(ValueError):
    """A mesh file that cannot be used; the message names the file and the array at fault."""


@dataclass
class MeshData:
    vertices: np.ndarray                      # (N, 3) float32
    faces: np.ndarray                         # (F, 3) int32, counter-clockwise seen from outside
    vertex_colors: np.ndarray | None = None   # (N, 4) uint8 RGBA, sRGB
    uv: np.ndarray | None = None              # (F * 3, 2) float32, one UV per face corner; (0, 0) = image bottom-left
    texture_png: bytes | None = None          # the baked colour texture, PNG-encoded

    @property
    def face_count(self) -> int:
        return int(self.faces.shape[0])

    @property
    def vertex_count(self) -> int:
        return int(self.vertices.shape[0])

    def validate(self, source: str = "mesh") -> None:
        """Raise MeshFileError unless shapes, dtypes and indices are consistent and finite."""
        v, f = self.vertices, self.faces
        if v.ndim != 2 or v.shape[1] != 3 or v.dtype != np.float32:
            raise MeshFileError(f"{source}: 'vertices' must be float32 (N, 3), got {v.dtype} {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype != np.int32:
            raise MeshFileError(f"{source}: 'faces' must be int32 (F, 3), got {f.dtype} {f.shape}")
        if not np.isfinite(v).all():
            raise MeshFileError(f"{source}: 'vertices' hold NaN or infinite values")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise MeshFileError(f"{source}: 'faces' index vertices outside 0..{len(v) - 1}")
        if self.vertex_colors is not None and (self.vertex_colors.shape != (len(v), 4) or
                                               self.vertex_colors.dtype != np.uint8):
            raise MeshFileError(f"{source}: 'vertex_colors' must be uint8 ({len(v)}, 4), "
                                f"got {self.vertex_colors.dtype} {self.vertex_colors.shape}")
        if self.uv is not None and (self.uv.shape != (3 * len(f), 2) or self.uv.dtype != np.float32):
            raise MeshFileError(f"{source}: 'uv' must be float32 ({3 * len(f)}, 2), got {self.uv.dtype} {self.uv.shape}")
        if self.texture_png is not None and self.uv is None:
            raise MeshFileError(f"{source}: a texture came without 'uv'")

    def to_npz_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"vertices": self.vertices, "faces": self.faces}
        if self.vertex_colors is not None:
            arrays["vertex_colors"] = self.vertex_colors
        if self.uv is not None:
            arrays["uv"] = self.uv
        if self.texture_png is not None:
            arrays["texture_png"] = np.frombuffer(self.texture_png, np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)   # stored, not compressed: the wire and the disk are cheaper than zlib here
        return buffer.getvalue()

    @classmethod
    def from_npz_bytes(cls, data: bytes, source: str = "mesh") -> "MeshData":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise MeshFileError(f"{source}: not a readable mesh file ({exc})") from None
        for name in ("vertices", "faces"):
            if name not in arrays:
                raise MeshFileError(f"{source}: the array {name!r} is missing")
        png = arrays.get("texture_png")
        mesh = cls(vertices=arrays["vertices"], faces=arrays["faces"], vertex_colors=arrays.get("vertex_colors"),
                   uv=arrays.get("uv"), texture_png=png.tobytes() if png is not None else None)
        mesh.validate(source)
        return mesh

    def write(self, path: Path) -> None:
        """Write atomically: a reader (the add-on fetching it) never sees half a file."""
        write_bytes_atomic(path, self.to_npz_bytes())

    @classmethod
    def read(cls, path: Path) -> "MeshData":
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MeshFileError(f"{path}: cannot read ({exc.strerror})") from None
        return cls.from_npz_bytes(data, str(path))
