"""Where every Carrara panel lives: the 3D View's sidebar (N), under the Carrara tab."""
from __future__ import annotations

import bpy


class SidebarPanel(bpy.types.Panel):
    """The base of each Carrara sidebar panel, which adds its label, its place in the tab (``bl_order``) and draw."""

    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Carrara"
