"""Add-on preferences: where the backend is, how to reach it securely, and whether to start one locally.

``BackendSettings`` is what the rest of the add-on reads; it comes from the preferences when the add-on is enabled
through Blender, and from the defaults when it is registered by a script (tests, ``carrara.register()``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import bpy


def root_package(package: str) -> str:
    """The add-on's root package, which names its preferences: "carrara" when imported as a Python package,
    "bl_ext.<repository>.carrara" when Blender loads it as an extension."""
    return package.rpartition(".")[0]


ROOT_PACKAGE = root_package(__package__)
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
DEFAULT_WORKSPACE = Path.home() / "carrara-workspace"


@dataclass
class BackendSettings:
    address: str = DEFAULT_ADDRESS
    server_public_key: str = ""
    client_keys: str = ""
    auto_start: bool = True
    python: str = ""
    workspace: Path = DEFAULT_WORKSPACE


class CarraraPreferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    backend_address: bpy.props.StringProperty(
        name="Backend address", default=DEFAULT_ADDRESS,
        description="ZeroMQ address of the backend, e.g. tcp://127.0.0.1:5555, or tcp://gpu-host:5555 for a "
                    "remote one (which needs the keys below)")
    server_public_key: bpy.props.StringProperty(
        name="Server public key",
        description="For a remote backend: the file server.key made by 'carrara-backend keys', or its 40-character "
                    "public key. Leave empty for a local backend")
    client_keys: bpy.props.StringProperty(
        name="Client key pair",
        description="For a remote backend: the file client.key_secret made by 'carrara-backend keys', or its text. "
                    "Leave empty for a local backend")
    auto_start: bpy.props.BoolProperty(
        name="Start a local backend automatically", default=True,
        description="When the backend address is on this machine and nothing answers there, start "
                    "'python -m carrara.backend serve' and restart it if it stops")
    python: bpy.props.StringProperty(
        name="Backend Python", subtype='FILE_PATH',
        description="Python interpreter that has Carrara's backend installed (pip install carrara). Empty: "
                    "$CARRARA_BACKEND_PYTHON, else the .venv of a development checkout holding this add-on, "
                    "else this Python if it can run the backend, else python3 on PATH")
    workspace: bpy.props.StringProperty(
        name="Workspace", subtype='DIR_PATH',
        description="Folder where a local backend keeps jobs, checkpoints and meshes. Empty: ~/carrara-workspace")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "backend_address")
        box = layout.box()
        box.label(text="Remote backend (CURVE encryption)", icon='LOCKED')
        box.prop(self, "server_public_key")
        box.prop(self, "client_keys")
        box = layout.box()
        box.prop(self, "auto_start")
        column = box.column()
        column.enabled = self.auto_start
        column.prop(self, "python")
        column.prop(self, "workspace")


def backend_settings(context: bpy.types.Context | None = None) -> BackendSettings:
    """The preferences if the add-on is enabled in Blender, else the defaults."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ROOT_PACKAGE)
    prefs = getattr(addon, "preferences", None)
    if prefs is None:
        return BackendSettings()
    workspace = bpy.path.abspath(prefs.workspace) if prefs.workspace else ""
    return BackendSettings(address=prefs.backend_address.strip() or DEFAULT_ADDRESS,
                           server_public_key=prefs.server_public_key, client_keys=prefs.client_keys,
                           auto_start=prefs.auto_start, python=bpy.path.abspath(prefs.python) if prefs.python else "",
                           workspace=Path(os.path.expanduser(workspace)) if workspace else DEFAULT_WORKSPACE)


CLASSES = (CarraraPreferences,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
