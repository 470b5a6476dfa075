"""A small synthetic capture with known geometry, rendered by real Blender (bpy, Cycles) for the engine tests.

An off-centre, rotated rounded box with a procedural checker colour (emission only, so colours do not depend on
lighting) is rendered from views spread over a sphere as 64x64 RGBA PNGs (transparent background: alpha is the
mask), and written as a COLMAP workspace (images/ + sparse/0) through the shared writer. The bounding sphere is
deliberately not the unit sphere at the origin, so normalisation is exercised. Ground truth: points sampled on
Blender's evaluated mesh, with their normals, in world coordinates.

``cached_scene`` renders once per test session (about 10 s) and every engine test module reuses it. Where bpy is
missing (the GPU machine), ``CARRARA_ENGINE_SCENE`` names a folder rendered beforehand with
``python tests/engine_scenes.py FOLDER``: the photos, the model and ``truth.npz`` travel, Blender does not.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carrara.shared.camera_convention import blender_intrinsics, colmap_from_c2w_opencv, opengl_from_opencv
from carrara.shared.colmap import write_model
from carrara.shared.reconstruction import Camera, Image, Points3D, Reconstruction

SPHERE_CENTER = np.array([0.4, -0.3, 1.2])
SPHERE_RADIUS = 1.5
BOX_CENTER_UNIT = np.array([0.08, -0.06, 0.04])       # in unit-sphere coordinates
BOX_HALF_UNIT = np.array([0.55, 0.40, 0.30])
BOX_BEVEL_UNIT = 0.08
BOX_ROTATION_DEG = (20.0, 0.0, 30.0)                  # Blender XYZ Euler
CAMERA_DISTANCE_UNIT = 2.2


@dataclass
class SceneTruth:
    folder: Path                      # COLMAP workspace: images/ and sparse/0
    sphere_center: np.ndarray         # world
    sphere_radius: float
    surface_points: np.ndarray        # (N, 3) world, on the box's surface
    surface_normals: np.ndarray       # (N, 3) unit, outward
    box_center: np.ndarray            # world: well inside the box
    width: int
    height: int


def _look_at_c2w_opencv(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = target - eye
    forward /= np.linalg.norm(forward)
    up = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.95 else np.array([0.0, 1.0, 0.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w


def _fibonacci_directions(count: int) -> np.ndarray:
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)


def _build_scene(bpy, width: int, height: int, samples: int):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    world = bpy.data.worlds.new("black")
    world.color = (0.0, 0.0, 0.0)
    scene.world = world

    bpy.ops.mesh.primitive_cube_add(size=2.0)
    box = bpy.context.active_object
    box.scale = tuple(BOX_HALF_UNIT * SPHERE_RADIUS)
    box.rotation_euler = tuple(math.radians(a) for a in BOX_ROTATION_DEG)
    box.location = tuple(SPHERE_CENTER + BOX_CENTER_UNIT * SPHERE_RADIUS)
    bevel = box.modifiers.new("round", "BEVEL")
    bevel.width = BOX_BEVEL_UNIT * SPHERE_RADIUS
    bevel.segments = 6
    bevel.affect = "EDGES"
    bpy.context.view_layer.update()
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)   # bevel in world units

    material = bpy.data.materials.new("checker")
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    coords = nodes.new("ShaderNodeTexCoord")
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 3.0
    checker.inputs["Color1"].default_value = (0.85, 0.45, 0.12, 1.0)
    checker.inputs["Color2"].default_value = (0.15, 0.35, 0.75, 1.0)
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(coords.outputs["Object"], checker.inputs["Vector"])
    links.new(checker.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    box.data.materials.append(material)

    camera_data = bpy.data.cameras.new("camera")
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    return scene, box, camera


def _surface_samples(bpy, box, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = box.evaluated_get(depsgraph).to_mesh()
    mesh.calc_loop_triangles()
    verts = np.empty(len(mesh.vertices) * 3, np.float64)
    mesh.vertices.foreach_get("co", verts)
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
    mesh.loop_triangles.foreach_get("vertices", tris)
    box.evaluated_get(depsgraph).to_mesh_clear()
    matrix = np.array(box.matrix_world)
    verts = verts.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
    corners = verts[tris.reshape(-1, 3)]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(area), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    c = corners[pick]
    points = c[:, 0] + u[:, None] * (c[:, 1] - c[:, 0]) + v[:, None] * (c[:, 2] - c[:, 0])
    normals = cross[pick] / np.linalg.norm(cross[pick], axis=1, keepdims=True)
    return points, normals


def render_scene(folder: Path, *, views: int = 32, width: int = 64, height: int = 64, samples: int = 4,
                 surface_samples: int = 4000) -> SceneTruth:
    """Render the capture into ``folder`` (images/ + sparse/0) and return its ground truth."""
    import bpy

    scene, box, camera = _build_scene(bpy, width, height, samples)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    fx = fy = 0.5 * width / math.tan(math.radians(28.0))
    cx, cy = width / 2.0, height / 2.0
    intr = blender_intrinsics(width, height, fx, fy, cx, cy)
    camera.data.sensor_fit = intr.sensor_fit
    camera.data.sensor_width = intr.sensor_width_mm
    camera.data.lens = intr.lens_mm
    camera.data.shift_x, camera.data.shift_y = intr.shift_x, intr.shift_y
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = intr.pixel_aspect_x, intr.pixel_aspect_y
    from mathutils import Matrix

    images = {}
    for index, direction in enumerate(_fibonacci_directions(views)):
        eye = SPHERE_CENTER + direction * CAMERA_DISTANCE_UNIT * SPHERE_RADIUS
        c2w = _look_at_c2w_opencv(eye, SPHERE_CENTER.copy())
        camera.matrix_world = Matrix(opengl_from_opencv(c2w).tolist())
        name = f"view_{index:03d}.png"
        scene.render.filepath = str(images_dir / name)
        bpy.ops.render.render(write_still=True)
        qvec, tvec = colmap_from_c2w_opencv(c2w)
        images[index + 1] = Image(index + 1, name, 1, qvec, tvec)
    rec = Reconstruction({1: Camera(1, "PINHOLE", width, height, np.array([fx, fy, cx, cy]))}, images, Points3D())
    write_model(rec, folder / "sparse" / "0")
    points, normals = _surface_samples(bpy, box, surface_samples, seed=1)
    np.savez(folder / TRUTH_FILE, surface_points=points, surface_normals=normals, size=np.array([width, height]))
    return _truth(folder)


TRUTH_FILE = "truth.npz"


def _truth(folder: Path) -> SceneTruth:
    """The ground truth ``render_scene`` saved beside the photos (the box's pose is this module's constants)."""
    saved = np.load(folder / TRUTH_FILE)
    width, height = (int(v) for v in saved["size"])
    return SceneTruth(folder, SPHERE_CENTER.copy(), SPHERE_RADIUS, saved["surface_points"], saved["surface_normals"],
                      SPHERE_CENTER + BOX_CENTER_UNIT * SPHERE_RADIUS, width, height)


_CACHE: dict[str, SceneTruth] = {}


def cached_scene(tmp_path_factory) -> SceneTruth:
    """The rendered capture, made once per pytest session."""
    if "box" not in _CACHE:
        rendered = os.environ.get("CARRARA_ENGINE_SCENE")
        if rendered and (Path(rendered) / TRUTH_FILE).is_file():
            _CACHE["box"] = _truth(Path(rendered))
        else:
            _CACHE["box"] = render_scene(tmp_path_factory.mktemp("engine_scene"))
    return _CACHE["box"]


if __name__ == "__main__":
    render_scene(Path(sys.argv[1]))
