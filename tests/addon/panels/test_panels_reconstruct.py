"""The Reconstruction and Reconstruct panels, drawn for real into a recording layout, before and after an import."""
from pathlib import Path

import bpy
import pytest

from carrara.addon.operators import reconstruct as ops_reconstruct
from carrara.addon.panels import capture as capture_panel, reconstruct as reconstruct_panel
from carrara.shared.jobs import PRESETS, ReconstructConfig
from testkit import REPO_ROOT, draw_panel

CHAIR = REPO_ROOT / "examples" / "chair"


def test_before_an_import_the_panels_say_what_to_do_first(registered_addon):
    reconstruction = draw_panel(capture_panel.CARRARA_PT_reconstruction)
    assert "Nothing imported yet" in reconstruction.texts()
    run = draw_panel(reconstruct_panel.CARRARA_PT_reconstruct)
    assert "Import a COLMAP model first (File > Import > COLMAP)" in run.texts()
    assert bpy.ops.carrara.reconstruct.poll() is False


def test_after_an_import_the_sphere_and_the_run_settings_show(registered_addon):
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(CHAIR)) == {"FINISHED"}
    recon = bpy.context.scene.carrara.reconstruction
    layout = draw_panel(capture_panel.CARRARA_PT_reconstruction)
    assert f"{recon.image_count} photos, {recon.point_count:,} points (PINHOLE)" in layout.texts()
    props = [args[1] for name, args, _ in layout.calls if name == "prop"]
    assert {"scene_type", "sphere_center", "sphere_radius"} <= set(props)

    run = draw_panel(reconstruct_panel.CARRARA_PT_reconstruct)
    assert [t for t in run.texts() if "first" in t] == []        # ready: no problem shown
    assert "carrara.reconstruct" in [op for op, _ in run.operators()]
    shown = {args[1] for name, args, _ in run.calls if name == "prop"}
    assert {"preset", "preview_every_s", "mesh_resolution", "decimate_faces", "texture", "export_glb"} <= shown
    assert bpy.ops.carrara.reconstruct.poll() is True


def test_the_config_carries_the_sphere_and_settings_in_input_coordinates(registered_addon):
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(CHAIR), z_up=True) == {"FINISHED"}
    scene = bpy.context.scene
    recon, settings = scene.carrara.reconstruction, scene.carrara.settings
    recon.sphere_radius = 1.25
    settings.preset, settings.decimate_faces, settings.export_ply = "preview", 1234, False
    config = ops_reconstruct.reconstruct_config(scene)
    assert Path(config["dataset"]["path"]) == Path(recon.model_path)
    assert config["sphere_radius"] == pytest.approx(1.25)
    assert config["sphere_center"] == pytest.approx(list(recon.sphere_center))
    assert (config["preset"], config["decimate_faces"], config["export_formats"]) == ("preview", 1234, ["glb"])
    assert config["iterations"] is None                         # 0 in the panel: the preset decides


def test_the_run_settings_start_at_the_job_configs_defaults_and_offer_the_shared_presets(registered_addon):
    scene = bpy.data.scenes.new("fresh")
    try:
        settings, defaults = scene.carrara.settings, ReconstructConfig()
        asset = settings.asset_json()
        assert asset == {name: getattr(defaults, name) for name in asset}
        for name in ("preset", "device", "downscale", "preview_every_s", "preview_resolution"):
            assert getattr(settings, name) == getattr(defaults, name), name
        items = settings.bl_rna.properties["preset"].enum_items
        assert [item.identifier for item in items] == list(PRESETS)
    finally:
        bpy.data.scenes.remove(scene)


def test_a_distorted_model_is_refused_with_what_to_do(registered_addon):
    assert bpy.ops.import_scene.carrara_colmap(filepath=str(CHAIR)) == {"FINISHED"}
    bpy.context.scene.carrara.reconstruction.undistorted = False
    problem = ops_reconstruct.readiness_problem(bpy.context.scene)
    assert "image_undistorter" in problem
    with pytest.raises(RuntimeError, match="image_undistorter"):
        bpy.ops.carrara.reconstruct()


def _shown(layout) -> dict[str, str | None]:
    return {args[1]: kwargs.get("text") for name, args, kwargs in layout.calls if name == "prop"}


def test_the_gpu_choice_shows_only_for_a_backend_with_several_gpus_and_the_submit_carries_it(
        registered_addon, tmp_path, monkeypatch):
    from carrara.addon.client.runtime import runtime
    from carrara.backend.server import capabilities
    from testkit import ServerThread, connect_client

    assert bpy.ops.import_scene.carrara_colmap(filepath=str(CHAIR)) == {"FINISHED"}
    scene = bpy.context.scene
    scene.carrara.settings.gpus = 2
    assert "gpus" not in _shown(draw_panel(reconstruct_panel.CARRARA_PT_reconstruct))
    assert ops_reconstruct.reconstruct_config(scene)["gpus"] == 2     # no backend has said yet: it judges the choice

    monkeypatch.delenv(capabilities.JOB_DEVICES_ENV, raising=False)
    with ServerThread(tmp_path / "workspace") as server:           # a real backend on this machine: no GPU
        connection = runtime().connection = connect_client(server.address)
        try:
            assert connection.job_gpus == 0
            assert "gpus" not in _shown(draw_panel(reconstruct_panel.CARRARA_PT_reconstruct))
            assert ops_reconstruct.reconstruct_config(scene)["gpus"] == 1

            # what a 2-GPU host's backend says in its WELCOME (its job devices, from its own function)
            caps = {**connection.capabilities, "gpu_count": 2,
                    "job_devices": capabilities.job_devices({"device": "cuda", "gpu_count": 2})}
            connection.welcome = {**connection.welcome, "capabilities": caps}
            assert connection.job_gpus == 2
            assert _shown(draw_panel(reconstruct_panel.CARRARA_PT_reconstruct))["gpus"] == "GPUs (of 2)"
            assert ops_reconstruct.reconstruct_config(scene)["gpus"] == 2
            scene.carrara.settings.gpus = 5                 # chosen on a bigger host: at most this one's
            assert ops_reconstruct.reconstruct_config(scene)["gpus"] == 2
        finally:
            connection.close()
            runtime().connection = None
