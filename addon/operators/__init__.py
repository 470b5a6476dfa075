"""The operators room: what the artist's buttons and menu entries do. Each operator reports what went wrong in
words that say what to do; the work itself is in plain functions (here, in ``scene/`` and ``client/``)."""
from __future__ import annotations

import bpy

from . import backend, import_export, job_files, prepare, reconstruct, sphere

CLASSES = (*import_export.CLASSES, *sphere.CLASSES, *backend.CLASSES, *job_files.CLASSES, *reconstruct.CLASSES,
           *prepare.CLASSES)
# File menu entries, in the order they appear.
MENU_ENTRIES = ((bpy.types.TOPBAR_MT_file_import, import_export.import_menu),
                (bpy.types.TOPBAR_MT_file_export, import_export.export_menu),
                (bpy.types.TOPBAR_MT_file_import, prepare.import_menu))

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    for menu, entry in MENU_ENTRIES:
        menu.append(entry)


def unregister() -> None:
    for menu, entry in reversed(MENU_ENTRIES):
        menu.remove(entry)
    _unregister_classes()
