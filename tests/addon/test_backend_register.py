"""Carrara registers and unregisters cleanly under the real bpy module, twice in a row."""
import bpy
import pytest

import carrara
from carrara.addon import preferences
from carrara.addon.client import pump
from carrara.addon.client.runtime import runtime


def _registered() -> dict:
    return {
        "backend panel": hasattr(bpy.types, "CARRARA_PT_backend"),
        "jobs panel": hasattr(bpy.types, "CARRARA_PT_jobs"),
        "preferences": preferences.CarraraPreferences.is_registered,
        "connect operator": hasattr(bpy.types, "CARRARA_OT_backend_connect"),
        "status": hasattr(bpy.types.WindowManager, "carrara_backend"),
        "scene runs": hasattr(bpy.types.Scene, "carrara"),
        "load handler": pump._on_load_post in bpy.app.handlers.load_post,
    }


def test_register_and_unregister_twice():
    for _ in range(2):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        carrara.register()
        try:
            assert all(_registered().values()), _registered()
            assert bpy.app.handlers.load_post.count(pump._on_load_post) == 1
            assert not bpy.app.timers.is_registered(pump._timer)      # timers never fire headless
            assert bpy.context.window_manager.carrara_backend.state == "closed"
            assert len(bpy.context.scene.carrara.runs) == 0
            assert pump.pump_tick() == pump.IDLE_INTERVAL_S           # nothing wanted: no connection made
            assert runtime().connection is None
        finally:
            carrara.unregister()
        assert not any(_registered().values()), _registered()


@pytest.mark.parametrize("package, root", [("carrara.addon", "carrara"),
                                           ("bl_ext.user_default.carrara.addon", "bl_ext.user_default.carrara")])
def test_preferences_are_named_after_the_root_package(package, root):
    assert preferences.root_package(package) == root
    assert preferences.CarraraPreferences.bl_idname == "carrara"


def test_settings_come_from_the_preferences_or_the_defaults(backend_preferences, tmp_path):
    backend_preferences.backend_address = "tcp://127.0.0.1:6000"
    backend_preferences.workspace = str(tmp_path)
    settings = preferences.backend_settings()
    assert (settings.address, settings.workspace, settings.auto_start) == ("tcp://127.0.0.1:6000", tmp_path, False)
    bpy.context.preferences.addons.remove(bpy.context.preferences.addons["carrara"])
    assert preferences.backend_settings() == preferences.BackendSettings()
