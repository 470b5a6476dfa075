"""The sparse point cloud as one mesh of loose vertices, drawn as coloured points in the viewport and in renders.

The mesh holds the points in the input's world coordinates (its object sits under the root Empty with an identity
transform), a byte colour attribute with the photos' colours, and COLMAP's per-point error and track length for
artists who want to filter. A Geometry Nodes modifier (Mesh to Points, Set Material) makes the vertices real
points that Cycles and EEVEE render, coloured by an emission material reading the colour attribute. Everything is
set with ``foreach_set`` from numpy: a million points cost well under a second.
"""
from __future__ import annotations

import bpy
import numpy as np

from ...shared.reconstruction import Points3D
from .created import CreatedData

COLOR_ATTRIBUTE = "Col"
ERROR_ATTRIBUTE = "colmap_error"
TRACK_LENGTH_ATTRIBUTE = "colmap_track_length"
RADIUS_INPUT = "Point Radius"


def build_point_cloud(name: str, points: Points3D, collection: bpy.types.Collection, parent: bpy.types.Object,
                      point_radius: float, created: CreatedData) -> bpy.types.Object:
    """A new object holding ``points``, linked into ``collection`` under ``parent``."""
    mesh = created.add(bpy.data.meshes.new(name))
    count = len(points)
    mesh.vertices.add(count)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(points.xyz, np.float32).ravel())
    rgba = np.ones((count, 4), np.float32)
    rgba[:, :3] = points.rgb / np.float32(255.0)
    colors = mesh.color_attributes.new(COLOR_ATTRIBUTE, "BYTE_COLOR", "POINT")
    colors.data.foreach_set("color_srgb", rgba.ravel())  # the photos' sRGB bytes, stored exactly
    mesh.color_attributes.active_color = colors
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    mesh.attributes.new(ERROR_ATTRIBUTE, "FLOAT", "POINT").data.foreach_set(
        "value", points.error.astype(np.float32))
    mesh.attributes.new(TRACK_LENGTH_ATTRIBUTE, "INT", "POINT").data.foreach_set(
        "value", np.diff(points.track_offsets).astype(np.int32))
    mesh.update()
    obj = created.add(bpy.data.objects.new(name, mesh))
    collection.objects.link(obj)
    obj.parent = parent
    modifier = obj.modifiers.new("Carrara Points", "NODES")
    modifier.node_group = _points_node_group(f"{name} Points", _point_material(f"{name} Colour", created),
                                             point_radius, created)
    modifier[modifier.node_group.interface.items_tree[RADIUS_INPUT].identifier] = float(point_radius)
    return obj


def _point_material(name: str, created: CreatedData) -> bpy.types.Material:
    """Emission coloured by the points' colour attribute: the photos' colours, with no lights needed."""
    material = created.add(bpy.data.materials.new(name))
    tree = material.node_tree
    tree.nodes.clear()
    attribute = tree.nodes.new("ShaderNodeAttribute")
    attribute.attribute_type = "GEOMETRY"
    attribute.attribute_name = COLOR_ATTRIBUTE
    emission = tree.nodes.new("ShaderNodeEmission")
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(attribute.outputs["Color"], emission.inputs["Color"])
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    attribute.location, emission.location, output.location = (-400, 0), (-150, 0), (100, 0)
    material.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return material


def _points_node_group(name: str, material: bpy.types.Material, point_radius: float,
                       created: CreatedData) -> bpy.types.NodeTree:
    group = created.add(bpy.data.node_groups.new(name, "GeometryNodeTree"))
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius = group.interface.new_socket(RADIUS_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    radius.default_value, radius.min_value = float(point_radius), 0.0
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    to_points = nodes.new("GeometryNodeMeshToPoints")
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = material
    links.new(group_in.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(group_in.outputs[RADIUS_INPUT], to_points.inputs["Radius"])
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], group_out.inputs["Geometry"])
    for x, node in enumerate((group_in, to_points, set_material, group_out)):
        node.location = (250 * x - 400, 0)
    return group


def point_positions(obj: bpy.types.Object, max_points: int | None = None) -> np.ndarray:
    """(N, 3) float64 vertex positions of a point-cloud object (its local = input world coordinates).

    ``max_points`` takes an even stride through them, for warnings that must stay cheap while dragging.
    """
    mesh = obj.data
    xyz = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", xyz)
    xyz = xyz.reshape(-1, 3)
    if max_points is not None and len(xyz) > max_points:
        xyz = xyz[:: int(np.ceil(len(xyz) / max_points))]
    return xyz.astype(np.float64)


def selected_point_positions(obj: bpy.types.Object) -> np.ndarray:
    """Positions of the vertices the artist selected (in Edit Mode or before leaving it)."""
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    mesh = obj.data
    selected = np.zeros(len(mesh.vertices), bool)
    mesh.vertices.foreach_get("select", selected)
    return point_positions(obj)[selected]
