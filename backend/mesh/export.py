"""Mesh files an artist opens anywhere: binary PLY (vertex colours) and glTF binary (.glb, texture embedded).

The GLB is written by hand (json + struct): one mesh, one material, one embedded PNG, well inside what a small
writer can get exactly right, and no extra dependency. Colour conventions that matter:

- PLY vertex colours are the sRGB bytes of ``MeshData.vertex_colors`` (what MeshLab and Blender expect).
- glTF's ``COLOR_0`` is *linear* and multiplies the base-colour texture. An untextured mesh gets its colours as
  ``COLOR_0`` (converted to linear, 16-bit). A textured mesh must not (the colour would be applied twice), so its
  vertex colours travel as the application attribute ``_VERTEX_COLOR`` (linear float RGBA), which Blender
  imports as a colour attribute and renderers ignore.
- glTF's UV origin is the image's top-left corner; ``MeshData.uv`` uses Blender's bottom-left, so v is flipped.
- glTF is +Y-up; we write the world's +Z as glTF's +Y, (x, y, z) -> (x, z, -y), which is exactly what Blender's
  importer undoes, so an imported GLB lands where the PLY (and the add-on's own import) lands.
"""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from ...shared.atomic_write import write_bytes_atomic
from ...shared.mesh_data import MeshData

_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5123, 5125
_GLB_MAGIC, _GLB_VERSION, _CHUNK_JSON, _CHUNK_BIN = 0x46546C67, 2, 0x4E4F534A, 0x004E4942


def ply_bytes(mesh: MeshData) -> bytes:
    """Binary little-endian PLY: float x, y, z, uchar red, green, blue, alpha, and triangles as int lists."""
    mesh.validate("PLY export")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.vertex_colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    vertex = np.empty(mesh.vertex_count, dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = mesh.vertices.T
    if mesh.vertex_colors is not None:
        for k, channel in enumerate(("red", "green", "blue", "alpha")):
            vertex[channel] = mesh.vertex_colors[:, k]
    face = np.empty(mesh.face_count, dtype=[("vertex_indices", "<i4", (3,))])
    face["vertex_indices"] = mesh.faces
    ply = PlyData([PlyElement.describe(vertex, "vertex"),
                   PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"},
                                       val_types={"vertex_indices": "i4"})],
                  text=False, byte_order="<")
    buffer = io.BytesIO()
    ply.write(buffer)
    return buffer.getvalue()


def write_ply(mesh: MeshData, path: Path) -> None:
    write_bytes_atomic(path, ply_bytes(mesh))


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """The sRGB transfer function inverted, for 0..1 floats."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals: glTF shades a mesh without NORMAL flat."""
    corners = vertices[faces].astype(np.float64)
    face_normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros((len(vertices), 3))
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normal)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.tile([0.0, 0.0, 1.0], (len(vertices), 1)), where=length > 0)
    return normals.astype(np.float32)


def _z_up_to_y_up(xyz: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack((xyz[:, 0], xyz[:, 2], -xyz[:, 1]), 1), dtype=np.float32)


class _BinaryBuffer:
    """The GLB's BIN chunk, assembled view by view (each 4-byte aligned, as accessors require)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        entry = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        self.views.append(entry)
        padding = (-len(data)) % 4
        self.parts.append(data + b"\0" * padding)
        self.length += len(data) + padding
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, component: int, target: int, normalized: bool = False,
                 bounds: bool = False) -> int:
        entry = {"bufferView": self.view(np.ascontiguousarray(array).tobytes(), target), "componentType": component,
                 "count": int(array.shape[0]), "type": kind}
        if normalized:
            entry["normalized"] = True
        if bounds:   # required for POSITION
            entry["min"] = array.min(0).astype(float).tolist()
            entry["max"] = array.max(0).astype(float).tolist()
        self.accessors.append(entry)
        return len(self.accessors) - 1

    def data(self) -> bytes:
        return b"".join(self.parts)


def glb_bytes(mesh: MeshData, name: str = "carrara_mesh") -> bytes:
    """A glTF 2.0 binary of one mesh: positions, smooth normals, colours and/or UVs with the embedded texture."""
    mesh.validate("glTF export")
    if mesh.face_count == 0:
        raise ValueError("glTF export: the mesh has no faces")
    vertices, faces, colors = mesh.vertices, mesh.faces.astype(np.int64), mesh.vertex_colors
    normals = _smooth_normals(vertices, faces)
    uv = None
    if mesh.texture_png is not None:
        # glTF keeps one UV per vertex: split vertices wherever a chart seam gives one vertex several UVs.
        corner_uv = mesh.uv.reshape(-1, 2)
        key = np.column_stack((faces.reshape(-1), corner_uv.view(np.int32)))
        unique, corner_to_vertex = np.unique(key, axis=0, return_inverse=True)
        source = unique[:, 0]
        vertices, normals = vertices[source], normals[source]
        colors = colors[source] if colors is not None else None
        uv = unique[:, 1:].astype(np.int32).view(np.float32)
        uv[:, 1] = 1.0 - uv[:, 1]
        faces = corner_to_vertex.reshape(-1, 3)
    buffer = _BinaryBuffer()
    attributes = {"POSITION": buffer.accessor(_z_up_to_y_up(vertices), "VEC3", _FLOAT, _ARRAY_BUFFER, bounds=True),
                  "NORMAL": buffer.accessor(_z_up_to_y_up(normals), "VEC3", _FLOAT, _ARRAY_BUFFER)}
    if uv is not None:
        attributes["TEXCOORD_0"] = buffer.accessor(uv, "VEC2", _FLOAT, _ARRAY_BUFFER)
    if colors is not None:
        linear = srgb_to_linear(colors.astype(np.float64) / 255.0)
        linear[:, 3] = colors[:, 3] / 255.0            # alpha is linear already
        if uv is None:
            attributes["COLOR_0"] = buffer.accessor(np.round(linear * 65535).astype(np.uint16), "VEC4",
                                                    _UNSIGNED_SHORT, _ARRAY_BUFFER, normalized=True)
        else:
            attributes["_VERTEX_COLOR"] = buffer.accessor(linear.astype(np.float32), "VEC4", _FLOAT, _ARRAY_BUFFER)
    indices = buffer.accessor(faces.reshape(-1).astype(np.uint32), "SCALAR", _UNSIGNED_INT, _ELEMENT_ARRAY_BUFFER)
    pbr: dict = {"metallicFactor": 0.0, "roughnessFactor": 1.0}
    document: dict = {
        "asset": {"version": "2.0", "generator": "Carrara"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [{"attributes": attributes, "indices": indices, "material": 0,
                                                  "mode": 4}]}],
        "materials": [{"name": name, "pbrMetallicRoughness": pbr}],
    }
    if mesh.texture_png is not None:
        image_view = buffer.view(mesh.texture_png)
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
        document["images"] = [{"bufferView": image_view, "mimeType": "image/png", "name": f"{name}_color"}]
        # Linear magnification, trilinear minification; clamp so chart borders never wrap to the far side.
        document["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        document["textures"] = [{"sampler": 0, "source": 0}]
    binary = buffer.data()
    document["accessors"], document["bufferViews"] = buffer.accessors, buffer.views
    document["buffers"] = [{"byteLength": len(binary)}]
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join((struct.pack("<III", _GLB_MAGIC, _GLB_VERSION, total),
                     struct.pack("<II", len(text), _CHUNK_JSON), text,
                     struct.pack("<II", len(binary), _CHUNK_BIN), binary))


def write_glb(mesh: MeshData, path: Path, name: str = "carrara_mesh") -> None:
    write_bytes_atomic(path, glb_bytes(mesh, name))
