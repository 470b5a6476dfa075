"""PLY and GLB files: read back exactly (plyfile, a structural GLB parse) and imported by Blender's glTF importer."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData

from carrara.backend.mesh.cleanup import vertex_normals
from carrara.backend.mesh.export import glb_bytes, srgb_to_linear, write_glb, write_ply
from carrara.backend.mesh.extract import extract_surface
from carrara.backend.mesh.atlas import uv_atlas
from carrara.backend.mesh.texture import bake_texture
from carrara.shared.mesh_data import MeshData


def _color(points, normals, view_dirs):
    return torch.stack((0.5 + 0.5 * torch.sin(4 * points[:, 0]), 0.5 + 0.5 * points[:, 1], 0.3 + 0 * points[:, 2]), 1)


def _mesh(textured: bool) -> MeshData:
    surface = extract_surface(lambda p: (p - torch.tensor([0.1, 0.0, 0.0])).norm(dim=1) - 0.5, 24)
    vertices, faces = surface.vertices, surface.faces
    rgb = _color(vertices, None, None)
    colors = np.concatenate([(rgb.numpy() * 255).round().astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], 1)
    uv = png = None
    if textured:
        uv = uv_atlas(vertices.numpy(), faces.numpy(), 64)
        png = bake_texture(vertices, faces, vertex_normals(vertices, faces), torch.from_numpy(uv), _color, 64, 4096)
    world = vertices.numpy() * 3.0 + np.array([10.0, -2.0, 5.0], np.float32)
    return MeshData(world.astype(np.float32), faces.numpy().astype(np.int32), colors, uv, png)


@pytest.fixture(scope="module")
def plain() -> MeshData:
    return _mesh(textured=False)


@pytest.fixture(scope="module")
def textured() -> MeshData:
    return _mesh(textured=True)


def test_ply_round_trip(plain, tmp_path):
    path = tmp_path / "mesh.ply"
    write_ply(plain, path)
    ply = PlyData.read(str(path))
    assert not ply.text and ply.byte_order == "<"
    vertex, face = ply["vertex"], ply["face"]
    read = np.stack([vertex[c] for c in "xyz"], 1)
    assert read.dtype == np.float32 and np.array_equal(read, plain.vertices)
    colors = np.stack([vertex[c] for c in ("red", "green", "blue", "alpha")], 1)
    assert np.array_equal(colors, plain.vertex_colors)
    assert np.array_equal(np.stack(face["vertex_indices"]), plain.faces)
    assert not list(tmp_path.glob("*.partial"))


def test_ply_without_colours_has_no_colour_properties(plain, tmp_path):
    path = tmp_path / "bare.ply"
    write_ply(MeshData(plain.vertices, plain.faces), path)
    names = [p.name for p in PlyData.read(str(path))["vertex"].properties]
    assert names == ["x", "y", "z"]


def _parse_glb(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<III", data)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20:20 + json_length])
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and 28 + json_length + bin_length == len(data)
    binary = data[28 + json_length:]
    assert document["buffers"] == [{"byteLength": bin_length}]
    return document, binary


_TYPES = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def _accessor(document: dict, binary: bytes, index: int) -> np.ndarray:
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = np.dtype(_TYPES[accessor["componentType"]])
    assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= len(binary)
    width = _WIDTH[accessor["type"]]
    assert view["byteLength"] == accessor["count"] * width * dtype.itemsize
    return np.frombuffer(binary, dtype, accessor["count"] * width, view["byteOffset"]).reshape(accessor["count"], -1)


def _y_up_to_z_up(xyz: np.ndarray) -> np.ndarray:
    return np.stack((xyz[:, 0], -xyz[:, 2], xyz[:, 1]), 1)


def test_untextured_glb_carries_positions_normals_and_linear_colours(plain):
    document, binary = _parse_glb(glb_bytes(plain))
    assert document["asset"]["version"] == "2.0"
    primitive = document["meshes"][0]["primitives"][0]
    attributes = primitive["attributes"]
    assert set(attributes) == {"POSITION", "NORMAL", "COLOR_0"} and primitive["mode"] == 4
    positions = _accessor(document, binary, attributes["POSITION"])
    position_accessor = document["accessors"][attributes["POSITION"]]
    assert np.allclose(position_accessor["min"], positions.min(0)) and np.allclose(position_accessor["max"],
                                                                                   positions.max(0))
    assert np.array_equal(_y_up_to_z_up(positions), plain.vertices)
    normals = _accessor(document, binary, attributes["NORMAL"])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    indices = _accessor(document, binary, primitive["indices"]).reshape(-1, 3)
    assert np.array_equal(indices, plain.faces)
    colors = _accessor(document, binary, attributes["COLOR_0"]) / 65535.0
    assert document["accessors"][attributes["COLOR_0"]]["normalized"] is True
    assert np.allclose(colors[:, :3], srgb_to_linear(plain.vertex_colors[:, :3] / 255.0), atol=1e-4)
    assert "images" not in document


def test_textured_glb_embeds_the_png_and_keeps_every_corner_uv(textured):
    document, binary = _parse_glb(glb_bytes(textured))
    primitive = document["meshes"][0]["primitives"][0]
    attributes = primitive["attributes"]
    assert "COLOR_0" not in attributes, "COLOR_0 would multiply the texture: colours travel as _VERTEX_COLOR"
    assert {"POSITION", "NORMAL", "TEXCOORD_0", "_VERTEX_COLOR"} <= set(attributes)
    image = document["images"][0]
    view = document["bufferViews"][image["bufferView"]]
    assert image["mimeType"] == "image/png"
    assert binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]] == textured.texture_png
    material = document["materials"][primitive["material"]]
    assert material["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0
    assert document["textures"][0] == {"sampler": 0, "source": 0}
    # Each face corner keeps its position and its UV (v flipped to glTF's top-left origin).
    positions = _y_up_to_z_up(_accessor(document, binary, attributes["POSITION"]))
    uv = _accessor(document, binary, attributes["TEXCOORD_0"])
    corners = _accessor(document, binary, primitive["indices"]).reshape(-1)
    assert np.array_equal(positions[corners], textured.vertices[textured.faces.reshape(-1)])
    assert np.array_equal(uv[corners, 0], textured.uv[:, 0])
    assert np.allclose(1.0 - uv[corners, 1], textured.uv[:, 1], atol=1e-7)


def test_glb_of_an_empty_mesh_is_refused():
    with pytest.raises(ValueError, match="no faces"):
        glb_bytes(MeshData(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)))


def _import_into_blender(path):
    import bpy

    before = set(bpy.data.objects)
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    created = [obj for obj in bpy.data.objects if obj not in before]
    assert len(created) == 1 and created[0].type == "MESH"
    return bpy, created[0]


def _remove(bpy, obj):
    mesh = obj.data
    materials = list(mesh.materials)
    bpy.data.objects.remove(obj)
    bpy.data.meshes.remove(mesh)
    for material in materials:
        for node in material.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None:
                bpy.data.images.remove(node.image)
        bpy.data.materials.remove(material)


def test_blender_imports_the_textured_glb_in_place_with_its_image(textured, tmp_path):
    path = tmp_path / "asset.glb"
    write_glb(textured, path)
    bpy, obj = _import_into_blender(path)
    try:
        mesh = obj.data
        assert len(mesh.polygons) == textured.face_count
        co = np.zeros(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        world = np.array(obj.matrix_world)
        co = co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
        # Same place as the PLY: every imported vertex is one of ours, and all of ours are there.
        ours = {tuple(v) for v in np.round(textured.vertices, 4).tolist()}
        theirs = {tuple(v) for v in np.round(co, 4).tolist()}
        assert theirs == ours
        assert "UVMap" in mesh.uv_layers and "_VERTEX_COLOR" in mesh.attributes
        nodes = mesh.materials[0].node_tree.nodes
        images = [n.image for n in nodes if n.type == "TEX_IMAGE"]
        assert len(images) == 1 and tuple(images[0].size) == (64, 64)
        expected = np.asarray(Image.open(io.BytesIO(textured.texture_png)).convert("RGBA"), np.float32) / 255.0
        pixels = np.zeros(64 * 64 * 4, np.float32)
        images[0].pixels.foreach_get(pixels)
        # Blender stores rows bottom-up; the texture must be the one we baked.
        assert np.allclose(pixels.reshape(64, 64, 4)[::-1], expected, atol=1.5 / 255)
        bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
        assert bsdf.inputs["Base Color"].links[0].from_node.type == "TEX_IMAGE"
    finally:
        _remove(bpy, obj)


def test_blender_imports_the_vertex_coloured_glb_with_its_colours(plain, tmp_path):
    path = tmp_path / "preview.glb"
    write_glb(plain, path)
    bpy, obj = _import_into_blender(path)
    try:
        mesh = obj.data
        assert len(mesh.polygons) == plain.face_count
        layer = mesh.color_attributes[0]
        srgb = np.zeros(len(layer.data) * 4, np.float32)
        layer.data.foreach_get("color_srgb", srgb)
        srgb = srgb.reshape(-1, 4)
        if layer.domain == "CORNER":
            loops = np.zeros(len(mesh.loops), np.int32)
            mesh.loops.foreach_get("vertex_index", loops)
            co = np.zeros(len(mesh.vertices) * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            positions = co.reshape(-1, 3)[loops]
        else:
            co = np.zeros(len(mesh.vertices) * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            positions = co.reshape(-1, 3)
        # Look each imported colour up by position: Blender shows the sRGB colour we computed.
        lookup = {tuple(v): c for v, c in zip(np.round(plain.vertices, 4).tolist(), plain.vertex_colors[:, :3])}
        expected = np.array([lookup[tuple(v)] for v in np.round(positions, 4).tolist()]) / 255.0
        assert np.abs(srgb[:, :3] - expected).max() < 1.5 / 255
    finally:
        _remove(bpy, obj)
