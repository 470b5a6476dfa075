"""The client room: everything that talks to a backend. The connection (``connection``, ``keep_alive``), the local
backend process, files in chunks (``transfers``), and the pump (``pump``) whose tick applies what the backend says
(``events``), sends datasets (``launches``) and delivers meshes, results and prepared datasets into Blender data.

``connection``, ``transfers`` and ``dataset_fetch`` need no bpy (the backend's tests and benchmarks use them), so
this file imports the pump only when Blender registers the room.
"""
from __future__ import annotations


def register() -> None:
    from . import pump
    pump.register()


def unregister() -> None:
    from . import pump
    pump.unregister()
