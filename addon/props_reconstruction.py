"""(placeholder: being written)"""
from __future__ import annotations

import bpy


class ReconstructionProperties(bpy.types.PropertyGroup):
    pass


CLASSES = (ReconstructionProperties,)
