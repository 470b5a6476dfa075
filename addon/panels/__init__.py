"""The panels room: the Carrara tab of the 3D View's sidebar (every panel derives from ``SidebarPanel``) and the
progress words it shares with the status bar. Panels only read and write properties; they never talk to the
backend."""
from __future__ import annotations

import bpy

from . import backend, capture, reconstruct

CLASSES = (*capture.CLASSES, *reconstruct.CLASSES, *backend.CLASSES)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
