"""The scene room: what Carrara builds in Blender data. A capture's import (``capture``: points, cameras, the
sphere and crop box, all under one root Empty), the backend's meshes (``mesh``), and a prepared dataset imported
when its job finishes. No operators or panels here: they call these functions."""
from __future__ import annotations

from . import sphere


def register() -> None:
    sphere.register()     # the sphere's object -> panel sync


def unregister() -> None:
    sphere.unregister()
