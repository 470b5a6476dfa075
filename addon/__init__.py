"""The Blender skin: preferences, scene properties, operators, panels and the one client pump.

Modules register in the order listed; each exposes ``register()`` and ``unregister()``. Logic lives in plain
functions (in these modules or in ``shared/``) that tests call without a UI.
"""
from __future__ import annotations

import importlib

# Property groups first (others refer to them), then operators, panels, and the pump last.
_MODULES = (
    "preferences",
    "properties",
    "ops_import",
    "ops_sphere",
    "ops_backend",
    "ops_job_files",
    "ops_reconstruct",
    "ops_prepare",
    "panel_reconstruction",
    "panel_run",
    "panel_backend",
    "pump",
)


def _modules():
    return [importlib.import_module(f".{name}", __package__) for name in _MODULES]


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
