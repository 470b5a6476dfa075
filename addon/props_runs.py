"""(placeholder: being written)"""
from __future__ import annotations

import bpy


class RunProperties(bpy.types.PropertyGroup):
    pass


CLASSES = (RunProperties,)
