"""Carrara: the Blender extension root and the ``carrara`` Python package.

Blender loads this file as the extension; Python code imports it as ``carrara``. It must stay light:
``register``/``unregister`` forward to ``addon`` only when Blender calls them, so importing ``carrara``
outside Blender (the backend, the tests) never imports bpy.
"""


def register() -> None:
    from .addon import register as register_addon
    register_addon()


def unregister() -> None:
    from .addon import unregister as unregister_addon
    unregister_addon()
