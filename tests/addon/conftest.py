"""Fixtures for add-on tests under the real bpy module: a registered add-on and its preferences."""
import pytest


@pytest.fixture
def registered_addon():
    """A factory-fresh empty file with Carrara registered, unregistered again afterwards."""
    import bpy
    import carrara
    bpy.ops.wm.read_factory_settings(use_empty=True)
    carrara.register()
    yield carrara
    carrara.unregister()


@pytest.fixture
def backend_preferences(registered_addon):
    """The add-on's preferences, as Blender keeps them for an enabled add-on (auto-start off unless a test says
    otherwise), so the pump can be pointed at a test backend."""
    import bpy
    addons = bpy.context.preferences.addons
    entry = addons.new()
    entry.module = "carrara"
    entry.preferences.auto_start = False
    yield entry.preferences
    if addons.get("carrara") is not None:
        addons.remove(addons["carrara"])
