"""Backend meshes become Blender objects in place: replaced in place, found after a rename, recreated if deleted."""
import io

import bpy
import numpy as np
import pytest
from PIL import Image

from carrara.addon.scene import mesh as scene_mesh
from carrara.shared.mesh_data import MeshData


@pytest.fixture
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def _tetrahedron(scale: float = 1.0, texture_rgb=None) -> MeshData:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) * scale
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    colors = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255], [9, 9, 9, 255]], np.uint8)
    uv, png = None, None
    if texture_rgb is not None:
        uv = np.random.default_rng(0).random((12, 2), dtype=np.float32)
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), texture_rgb, np.uint8)).save(buffer, "PNG")
        png = buffer.getvalue()
    return MeshData(vertices, faces, colors, uv, png)


def test_geometry_colours_and_uvs_arrive_exactly(empty_scene):
    data = _tetrahedron(2.0, texture_rgb=(10, 200, 30))
    name = scene_mesh.place_job_mesh("j1", "final", "Chair", data, parent_name=None, collection_name=None,
                                     with_material=True)
    mesh = bpy.data.objects[name].data
    co = np.zeros(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    np.testing.assert_array_equal(co.reshape(-1, 3), data.vertices)
    corners = np.zeros(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    np.testing.assert_array_equal(corners.reshape(-1, 3), data.faces)
    colours = np.zeros(len(mesh.vertices) * 4, np.float32)
    mesh.color_attributes[scene_mesh.COLOR_ATTRIBUTE].data.foreach_get("color_srgb", colours)
    np.testing.assert_allclose(colours.reshape(-1, 4), data.vertex_colors / 255.0, atol=1 / 255)
    uv = np.zeros(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers[scene_mesh.UV_MAP].data.foreach_get("uv", uv)
    np.testing.assert_allclose(uv.reshape(-1, 2), data.uv, atol=1e-6)
    assert mesh.validate(verbose=False) is False  # False: nothing needed fixing


def test_textured_material_uses_the_packed_png(empty_scene):
    name = scene_mesh.place_job_mesh("j1", "final", "Chair", _tetrahedron(texture_rgb=(10, 200, 30)),
                                     parent_name=None, collection_name=None, with_material=True)
    tree = bpy.data.objects[name].data.materials[0].node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    source = bsdf.inputs["Base Color"].links[0].from_node
    assert source.type == "TEX_IMAGE" and source.image.packed_file is not None
    assert source.inputs["Vector"].links[0].from_node.uv_map == scene_mesh.UV_MAP
    np.testing.assert_allclose(source.image.pixels[:3], np.array([10, 200, 30]) / 255, atol=0.01)


def test_untextured_material_reads_vertex_colours(empty_scene):
    name = scene_mesh.place_job_mesh("j1", "final", "Chair", _tetrahedron(), parent_name=None,
                                     collection_name=None, with_material=True)
    tree = bpy.data.objects[name].data.materials[0].node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Base Color"].links[0].from_node.layer_name == scene_mesh.COLOR_ATTRIBUTE


def test_preview_replaces_data_in_place_and_frees_the_old(empty_scene):
    parent = bpy.data.objects.new("Root", None)
    collection = bpy.data.collections.new("Recon")
    empty_scene.collection.children.link(collection)
    collection.objects.link(parent)
    first = scene_mesh.place_job_mesh("j1", "preview", "Preview", _tetrahedron(1.0), parent_name="Root",
                                      collection_name="Recon", with_material=False)
    obj = bpy.data.objects[first]
    obj.location = (5, 0, 0)          # an artist's edit survives the next preview
    old_mesh_name = obj.data.name
    second = scene_mesh.place_job_mesh("j1", "preview", "Preview", _tetrahedron(3.0), parent_name="Root",
                                       collection_name="Recon", with_material=False)
    assert second == first and bpy.data.objects[second] == obj
    assert obj.parent == parent and obj.users_collection[0] == collection
    assert tuple(obj.location) == (5, 0, 0)
    assert old_mesh_name not in bpy.data.meshes and len(bpy.data.meshes) == 1
    assert max(v.co.x for v in obj.data.vertices) == pytest.approx(3.0)


def test_renamed_object_is_found_and_deleted_one_recreated(empty_scene):
    name = scene_mesh.place_job_mesh("j1", "preview", "Preview", _tetrahedron(), parent_name=None,
                                     collection_name=None, with_material=False)
    bpy.data.objects[name].name = "My chair"
    assert scene_mesh.place_job_mesh("j1", "preview", "Preview", _tetrahedron(), parent_name=None,
                                     collection_name=None, with_material=False) == "My chair"
    bpy.data.objects.remove(bpy.data.objects["My chair"])
    again = scene_mesh.place_job_mesh("j1", "preview", "Preview", _tetrahedron(), parent_name=None,
                                      collection_name=None, with_material=False)
    assert again in bpy.data.objects and scene_mesh.find_job_object("j1", "preview").name == again
    # another job's object of the same role is a different object
    other = scene_mesh.place_job_mesh("j2", "preview", "Preview", _tetrahedron(), parent_name=None,
                                      collection_name=None, with_material=False)
    assert other != again
