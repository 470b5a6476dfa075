"""The Blender skin, in rooms: properties, the scene builders, operators, panels and the client that talks to the
backend; ``preferences`` stays beside this file because Blender finds an add-on's preferences by its root package.

The rooms register in the order listed (each exposes ``register()`` and ``unregister()``) and unregister in
reverse. They are imported only then, so ``client.connection`` and ``client.transfers`` load without bpy. Logic
lives in plain functions (in these rooms or in ``shared/``) that tests call without a UI.
"""
from __future__ import annotations

import importlib

# Property groups first (the others refer to them), then the scene's handlers, operators, panels, and the pump last.
_ROOMS = ("preferences", "properties", "scene", "operators", "panels", "client")


def _rooms():
    return [importlib.import_module(f".{name}", __package__) for name in _ROOMS]


def register() -> None:
    for room in _rooms():
        room.register()


def unregister() -> None:
    for room in reversed(_rooms()):
        room.unregister()
