"""What an import created, so that a failure part-way removes exactly that and the file is as it was before."""
from __future__ import annotations

import bpy

# Most specific types first: a GeometryNodeTree is a NodeTree, every one of these is an ID.
_DATA_COLLECTIONS = (
    (bpy.types.Object, "objects"),
    (bpy.types.Mesh, "meshes"),
    (bpy.types.Camera, "cameras"),
    (bpy.types.Image, "images"),
    (bpy.types.Material, "materials"),
    (bpy.types.NodeTree, "node_groups"),
    (bpy.types.Collection, "collections"),
    (bpy.types.Action, "actions"),
)


class CreatedData:
    """Datablocks made by one import, removed newest first by ``remove_all`` when the import fails."""

    def __init__(self) -> None:
        self._items: list[tuple[str, bpy.types.ID]] = []

    def add(self, datablock):
        """Record ``datablock`` and return it, so creation reads ``created.add(bpy.data.meshes.new(...))``."""
        for kind, name in _DATA_COLLECTIONS:
            if isinstance(datablock, kind):
                self._items.append((name, datablock))
                return datablock
        raise TypeError(f"cannot track a {type(datablock).__name__}")

    def remove_all(self) -> None:
        for name, datablock in reversed(self._items):
            try:
                getattr(bpy.data, name).remove(datablock)
            except ReferenceError:  # already gone with its owner
                pass
        self._items.clear()
