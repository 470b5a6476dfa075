"""The sphere and crop box Empties in two-way sync with the panel, the fitting operators, warnings and export."""
import json

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from carrara.addon.scene import sphere as scene_sphere
from carrara.shared import colmap
from carrara.shared.sphere import fit_sphere_to_camera_views
from testkit import real_colmap_model, team_param, write_chair_in_colmap_frame


@pytest.fixture(params=[pytest.param(("chair", False), id="chair-as-is"),
                        pytest.param(("chair", True), id="chair-z-up"),
                        team_param(("fountain", False), data="strecha_fountain_p11", id="fountain-as-is"),
                        team_param(("fountain", True), data="strecha_fountain_p11", id="fountain-z-up")])
def scene(request, registered_addon, tmp_path):
    """A real capture imported as it is or turned z-up: the bundled chair in a COLMAP-like world (tilted, scaled,
    off-centre), or the team's fountain."""
    name, z_up = request.param
    model = write_chair_in_colmap_frame(tmp_path / "chair") if name == "chair" else real_colmap_model(name)
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(model), photos="NONE", z_up=z_up) == {"FINISHED"}
    return bpy.context.scene


def props(scene):
    return scene.carrara.reconstruction


def sphere_object(scene):
    return bpy.data.objects[props(scene).sphere_object_name]


def root_matrix(scene):
    return bpy.data.objects[props(scene).root_empty_name].matrix_world


def estimated(scene) -> tuple[np.ndarray, float]:
    """The sphere as the import estimated it: the tests place things relative to it, whatever the capture's scale."""
    sphere = scene_sphere.sphere_from_props(scene)
    return sphere.center, sphere.radius


def test_import_estimates_a_sphere_the_object_shows(scene):
    shown = scene_sphere.sphere_from_object(scene, sphere_object(scene))
    np.testing.assert_allclose(shown.center, props(scene).sphere_center, rtol=1e-5)
    assert shown.radius == pytest.approx(props(scene).sphere_radius, rel=1e-5)
    assert sphere_object(scene).empty_display_type == "SPHERE"
    assert props(scene).sphere_warnings == ""


def test_panel_fields_move_and_scale_the_sphere(scene):
    center, radius = estimated(scene)
    moved = center + radius * np.array([0.25, 0.25, 0.2])
    props(scene).sphere_center = moved
    props(scene).sphere_radius = 0.4 * radius
    world = root_matrix(scene) @ Matrix.Translation(moved)
    np.testing.assert_allclose(sphere_object(scene).matrix_world.translation, world.translation, atol=1e-4)
    np.testing.assert_allclose(sphere_object(scene).matrix_world.to_scale(), (0.4 * radius,) * 3, rtol=1e-5)


def test_grabbing_and_scaling_the_sphere_updates_the_panel(scene):
    center, radius = estimated(scene)
    moved = center + radius * np.array([-0.1, 0.1, 0.05])
    obj = sphere_object(scene)
    target = Matrix.Translation(moved) @ Matrix.Diagonal((0.6 * radius,) * 3 + (1.0,))
    obj.matrix_world = root_matrix(scene) @ target   # what the artist's grab and scale amount to
    assert scene_sphere.read_sphere_from_object(scene)
    np.testing.assert_allclose(props(scene).sphere_center, moved, atol=1e-4)
    assert props(scene).sphere_radius == pytest.approx(0.6 * radius, rel=1e-5)
    assert not scene_sphere.read_sphere_from_object(scene)  # settled: nothing left to write


def test_the_depsgraph_handler_syncs_without_being_called(scene):
    obj = sphere_object(scene)
    obj.scale = (1.5, 1.5, 4.0)   # non-uniform: the sphere must still hold the whole ellipsoid
    bpy.context.view_layer.update()
    assert props(scene).sphere_radius == pytest.approx(4.0, rel=1e-5)


def test_renamed_sphere_is_still_found(scene):
    x = props(scene).sphere_center[0]
    sphere_object(scene).name = "My sphere"
    bpy.data.objects["My sphere"].location.x += 1.0
    bpy.context.view_layer.update()
    assert props(scene).sphere_center[0] == pytest.approx(x + 1.0, abs=1e-4)
    assert scene_sphere.find_object(scene, scene_sphere.SPHERE_ROLE).name == "My sphere"


def test_warnings_follow_the_sphere_and_the_scene_type(scene):
    center, radius = estimated(scene)
    props(scene).sphere_radius = radius / 500
    assert "tiny" in props(scene).sphere_warnings and "holds only" in props(scene).sphere_warnings
    props(scene).sphere_radius = 2 * np.linalg.norm(scene_sphere.camera_centers(scene) - center, axis=1).max()
    assert "cameras are inside" in props(scene).sphere_warnings
    props(scene).scene_type = "indoor"
    assert "cameras are inside" not in props(scene).sphere_warnings


def test_fit_to_selected_points(scene):
    reach = estimated(scene)[1] / 4
    points = bpy.data.objects[props(scene).points_object_name]
    xyz = np.array([v.co[:] for v in points.data.vertices])
    chosen = np.linalg.norm(xyz - xyz.mean(0), axis=1) < reach
    assert 2 <= chosen.sum() < len(xyz)
    points.data.vertices.foreach_set("select", chosen)
    assert bpy.ops.carrara.sphere_fit_selected_points() == {"FINISHED"}
    sphere = scene_sphere.sphere_from_props(scene)
    farthest = np.linalg.norm(xyz[chosen] - sphere.center, axis=1).max()
    assert farthest == pytest.approx(sphere.radius, rel=1e-5)  # tight: the smallest sphere, in float32 fields
    assert sphere.radius < reach
    np.testing.assert_allclose(scene_sphere.sphere_from_object(scene, sphere_object(scene)).center, sphere.center,
                               atol=1e-4)


def test_fit_to_selected_points_needs_a_selection(scene):
    points = bpy.data.objects[props(scene).points_object_name]
    points.data.vertices.foreach_set("select", np.zeros(len(points.data.vertices), bool))
    with pytest.raises(RuntimeError, match="Select at least two points"):
        bpy.ops.carrara.sphere_fit_selected_points()


def test_fit_to_the_cameras_view(scene):
    props(scene).sphere_radius = 100.0
    assert bpy.ops.carrara.sphere_fit_camera_views() == {"FINISHED"}
    rec = colmap.read_model(props(scene).model_path)
    expected = fit_sphere_to_camera_views(rec)
    np.testing.assert_allclose(props(scene).sphere_center, expected.center, rtol=1e-5)
    assert props(scene).sphere_radius == pytest.approx(expected.radius, rel=1e-5)


def test_crop_box_syncs_and_exports_as_aabb_range(scene, tmp_path):
    center, radius = estimated(scene)
    assert bpy.ops.carrara.crop_box_add() == {"FINISHED"}
    box = bpy.data.objects[props(scene).crop_box_object_name]
    assert props(scene).crop_enabled and box.empty_display_type == "CUBE"
    low, high = center - radius * np.array([0.8, 0.6, 0.4]), center + radius * np.array([0.5, 0.4, 0.3])
    props(scene).crop_min, props(scene).crop_max = low, high
    np.testing.assert_allclose(scene_sphere.crop_box_from_object(scene, box), np.stack([low, high], 1), atol=1e-4)
    middle, half = center + radius * np.array([0.1, 0.2, 0.0]), radius * np.array([0.5, 0.25, 0.125])
    box.matrix_world = root_matrix(scene) @ Matrix.Translation(middle) @ Matrix.Diagonal((*half, 1.0))
    bpy.context.view_layer.update()
    np.testing.assert_allclose(props(scene).crop_min, middle - half, atol=1e-4)
    np.testing.assert_allclose(props(scene).crop_max, middle + half, atol=1e-4)
    out = tmp_path / "transforms.json"
    assert bpy.ops.export_scene.carrara_transforms(filepath=str(out)) == {"FINISHED"}
    meta = json.loads(out.read_text())
    np.testing.assert_allclose(meta["aabb_range"], np.stack([middle - half, middle + half], 1), atol=1e-4)
    np.testing.assert_allclose(meta["sphere_center"], props(scene).sphere_center, rtol=1e-6)
    assert bpy.ops.carrara.crop_box_remove() == {"FINISHED"}
    assert "Crop box" not in bpy.data.objects and not props(scene).crop_enabled


def test_estimate_again_follows_the_scene_type(scene):
    props(scene).scene_type = "indoor"
    assert bpy.ops.carrara.sphere_estimate() == {"FINISHED"}
    centres = scene_sphere.camera_centers(scene)
    assert scene_sphere.sphere_from_props(scene).contains(centres).all()
    assert props(scene).sphere_warnings == ""


def test_panel_is_in_the_carrara_tab_first(registered_addon):
    panel = bpy.types.CARRARA_PT_reconstruction
    assert panel.is_registered and panel.bl_category == "Carrara" and panel.bl_order == 0
