"""The bounding sphere and the crop box as Empties the artist grabs and scales, in two-way sync with the panel.

The truth lives in the scene properties (``Scene.carrara.reconstruction``), in the input's world coordinates:
- panel -> object: the properties' ``update`` callbacks call ``write_sphere_to_object`` / ``write_crop_box_to_object``;
- object -> panel: a persistent ``depsgraph_update_post`` handler calls ``read_sphere_from_object`` /
  ``read_crop_box_from_object`` when the artist moved or scaled one.
Both directions compare before writing, so each write settles after one echo. The objects hang under the root
Empty, whose transform (COLMAP -> Blender, optional Z-up) is undone when reading, so the properties stay in COLMAP
coordinates whatever the alignment. Objects are found by the names the properties store, or by their role if the
artist renamed them.
"""
from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from ...shared.sphere import BoundingSphere, sphere_warnings
from .created import CreatedData
from .points import point_positions

ROLE_KEY = "carrara_role"
ROOT_ROLE, SPHERE_ROLE, CROP_ROLE, POINTS_ROLE = "root", "sphere", "crop_box", "points"
CAMERA_CENTERS_KEY = "carrara_camera_centers"      # on the root: (N*3) camera centres, COLMAP coordinates
CAMERA_AXES_KEY = "carrara_camera_axes"            # on the root: (N*3) optical axes
CAMERA_HALF_FOV_KEY = "carrara_camera_half_fov"    # on the root: (N) half the narrower field of view, radians
_WARNING_POINTS = 20_000   # points sampled for warnings, so they stay cheap while the artist drags the sphere
_TOLERANCE = 1e-6          # relative: below this, two spheres are the same and nothing is written
# Set while several properties change together (centre and radius), so their update callbacks do not write a
# half-updated sphere (centre new, radius old) onto the object. Transient: never holds data across calls.
_updating_together = False


def updating_together() -> bool:
    return _updating_together


def capture_props(scene: bpy.types.Scene):
    return scene.carrara.reconstruction


def find_object(scene: bpy.types.Scene, role: str) -> bpy.types.Object | None:
    """The imported object with this role: by its stored name, else by role under the stored root."""
    props = capture_props(scene)
    stored = {ROOT_ROLE: props.root_empty_name, SPHERE_ROLE: props.sphere_object_name,
              CROP_ROLE: props.crop_box_object_name, POINTS_ROLE: props.points_object_name}[role]
    obj = bpy.data.objects.get(stored) if stored else None
    if obj is not None and obj.get(ROLE_KEY) == role:
        return obj
    if not props.root_empty_name:
        return None
    for candidate in bpy.data.objects:
        if candidate.get(ROLE_KEY) == role and (role == ROOT_ROLE or (
                candidate.parent is not None and candidate.parent.name == props.root_empty_name)):
            return candidate
    return None


def _root_matrix(scene: bpy.types.Scene) -> Matrix:
    root = find_object(scene, ROOT_ROLE)
    return root.matrix_world.copy() if root is not None else Matrix.Identity(4)


def _local_matrix(scene: bpy.types.Scene, obj: bpy.types.Object) -> np.ndarray:
    """The object's matrix in COLMAP coordinates (the root Empty's transform undone)."""
    return np.array(_root_matrix(scene).inverted() @ obj.matrix_world)


def _set_local_matrix(scene: bpy.types.Scene, obj: bpy.types.Object, local: np.ndarray) -> None:
    obj.matrix_world = _root_matrix(scene) @ Matrix(local.tolist())


# ----------------------------------------------------------------------------------------------- the sphere


def build_sphere_object(name: str, sphere: BoundingSphere, collection: bpy.types.Collection,
                        parent: bpy.types.Object, created: CreatedData) -> bpy.types.Object:
    obj = created.add(bpy.data.objects.new(name, None))
    obj.empty_display_type = "SPHERE"
    obj.empty_display_size = 1.0
    obj[ROLE_KEY] = SPHERE_ROLE
    collection.objects.link(obj)
    obj.parent = parent
    obj.location = sphere.center
    obj.scale = (sphere.radius,) * 3
    obj.show_in_front = True
    return obj


def sphere_from_props(scene: bpy.types.Scene) -> BoundingSphere:
    props = capture_props(scene)
    return BoundingSphere(np.array(props.sphere_center), props.sphere_radius)


def sphere_from_object(scene: bpy.types.Scene, obj: bpy.types.Object) -> BoundingSphere:
    """The sphere an Empty shows: its centre, and its largest scale axis times its display size."""
    local = _local_matrix(scene, obj)
    scale = np.linalg.norm(local[:3, :3], axis=0).max()
    return BoundingSphere(local[:3, 3], float(scale * obj.empty_display_size))


def _same_sphere(a: BoundingSphere, b: BoundingSphere) -> bool:
    size = max(a.radius, b.radius)
    return bool(np.all(np.abs(a.center - b.center) <= _TOLERANCE * size) and
                abs(a.radius - b.radius) <= _TOLERANCE * size)


def write_sphere_to_object(scene: bpy.types.Scene) -> bool:
    """Panel -> viewport. Returns whether the object moved."""
    obj = find_object(scene, SPHERE_ROLE)
    props = capture_props(scene)
    if obj is None or props.sphere_radius <= 0:
        return False
    wanted = sphere_from_props(scene)
    if _same_sphere(sphere_from_object(scene, obj), wanted):
        return False
    local = np.diag([wanted.radius / obj.empty_display_size] * 3 + [1.0])
    local[:3, 3] = wanted.center
    _set_local_matrix(scene, obj, local)
    return True


def read_sphere_from_object(scene: bpy.types.Scene) -> bool:
    """Viewport -> panel, after the artist grabbed or scaled the sphere. Returns whether the properties changed."""
    obj = find_object(scene, SPHERE_ROLE)
    if obj is None:
        return False
    seen = sphere_from_object(scene, obj)
    props = capture_props(scene)
    if props.sphere_radius > 0 and _same_sphere(seen, sphere_from_props(scene)):
        return False
    set_together(props, sphere_center=seen.center.tolist(), sphere_radius=seen.radius)
    return True


def set_together(props, **values) -> None:
    """Set several properties with their update callbacks held back (the caller syncs once, after)."""
    global _updating_together
    _updating_together = True
    try:
        for name, value in values.items():
            setattr(props, name, value)
    finally:
        _updating_together = False


def set_sphere(scene: bpy.types.Scene, sphere: BoundingSphere) -> None:
    """Set the sphere from code (operators, import): properties, then the object and the warnings follow."""
    set_together(capture_props(scene), sphere_center=sphere.center.tolist(), sphere_radius=sphere.radius)
    write_sphere_to_object(scene)
    refresh_warnings(scene)


# --------------------------------------------------------------------------------------------- the crop box


def build_crop_box_object(scene: bpy.types.Scene, aabb: np.ndarray, collection: bpy.types.Collection,
                          parent: bpy.types.Object) -> bpy.types.Object:
    obj = bpy.data.objects.new("Crop box", None)
    obj.empty_display_type = "CUBE"   # spans -1..1 at display size 1, so scale = half the box
    obj.empty_display_size = 1.0
    obj[ROLE_KEY] = CROP_ROLE
    collection.objects.link(obj)
    obj.parent = parent
    obj.location = aabb.mean(axis=1)
    obj.scale = (aabb[:, 1] - aabb[:, 0]) / 2
    obj.show_in_front = True
    return obj


def crop_box_from_object(scene: bpy.types.Scene, obj: bpy.types.Object) -> np.ndarray:
    """(3, 2) [[xmin, xmax], ...] of the box an Empty shows (its rotation ignored: the box is axis-aligned)."""
    local = _local_matrix(scene, obj)
    half = np.linalg.norm(local[:3, :3], axis=0) * obj.empty_display_size
    return np.stack([local[:3, 3] - half, local[:3, 3] + half], axis=1)


def crop_box_from_props(scene: bpy.types.Scene) -> np.ndarray:
    props = capture_props(scene)
    return np.stack([np.array(props.crop_min), np.array(props.crop_max)], axis=1)


def write_crop_box_to_object(scene: bpy.types.Scene) -> bool:
    obj = find_object(scene, CROP_ROLE)
    if obj is None:
        return False
    wanted = crop_box_from_props(scene)
    if np.allclose(crop_box_from_object(scene, obj), wanted, rtol=0, atol=_box_tolerance(wanted)):
        return False
    half = np.maximum((wanted[:, 1] - wanted[:, 0]) / 2, 1e-9) / obj.empty_display_size
    local = np.diag(list(half) + [1.0])
    local[:3, 3] = wanted.mean(axis=1)
    _set_local_matrix(scene, obj, local)
    return True


def read_crop_box_from_object(scene: bpy.types.Scene) -> bool:
    obj = find_object(scene, CROP_ROLE)
    if obj is None:
        return False
    seen = crop_box_from_object(scene, obj)
    if np.allclose(seen, crop_box_from_props(scene), rtol=0, atol=_box_tolerance(seen)):
        return False
    set_together(capture_props(scene), crop_min=seen[:, 0].tolist(), crop_max=seen[:, 1].tolist())
    return True


def set_crop_box(scene: bpy.types.Scene, aabb: np.ndarray) -> None:
    """Set the crop box from code: properties first, then the object follows."""
    set_together(capture_props(scene), crop_min=aabb[:, 0].tolist(), crop_max=aabb[:, 1].tolist())
    write_crop_box_to_object(scene)


def _box_tolerance(box: np.ndarray) -> float:
    return _TOLERANCE * max(float(np.abs(box).max()), 1e-9)


# ------------------------------------------------------------------------------------------------ warnings


def camera_centers(scene: bpy.types.Scene) -> np.ndarray:
    root = find_object(scene, ROOT_ROLE)
    if root is None or CAMERA_CENTERS_KEY not in root:
        return np.zeros((0, 3))
    return np.array(root[CAMERA_CENTERS_KEY], np.float64).reshape(-1, 3)


def refresh_warnings(scene: bpy.types.Scene) -> list[str]:
    """Recompute the sphere's warnings into the properties (written only when they change)."""
    props = capture_props(scene)
    if not props.root_empty_name or props.sphere_radius <= 0:
        messages = []
    else:
        points = find_object(scene, POINTS_ROLE)
        xyz = point_positions(points, _WARNING_POINTS) if points is not None else np.zeros((0, 3))
        messages = sphere_warnings(sphere_from_props(scene), xyz, camera_centers(scene), props.scene_type)
    text = "\n".join(messages)
    if props.sphere_warnings != text:
        props.sphere_warnings = text
    return messages


@bpy.app.handlers.persistent
def on_depsgraph_update(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph) -> None:
    """Viewport -> panel when the artist transformed the sphere or the crop box."""
    if not hasattr(scene, "carrara") or not scene.carrara.reconstruction.root_empty_name:
        return
    roles = {u.id.get(ROLE_KEY) for u in depsgraph.updates
             if isinstance(u.id, bpy.types.Object) and u.is_updated_transform}
    if SPHERE_ROLE in roles and read_sphere_from_object(scene):
        refresh_warnings(scene)
    if CROP_ROLE in roles:
        read_crop_box_from_object(scene)


def register() -> None:
    if on_depsgraph_update not in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.append(on_depsgraph_update)


def unregister() -> None:
    if on_depsgraph_update in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.remove(on_depsgraph_update)
