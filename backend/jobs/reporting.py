"""How long-running work talks to whoever runs it: the CLI's progress bar or the server's job events.

A job only ever calls a Reporter; it never knows whether a terminal or a Blender session is listening. The
server's job context and the CLI's terminal each implement this protocol once. Its progress, log and cancel part
is the Structure-from-Motion stages' ``StageReporter``, declared where they use it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from ...shared.mesh_data import MeshData
from ..prepare.stage_reporter import StageReporter


class Reporter(StageReporter, Protocol):
    """Everything a job says: the stages' progress, log lines and cancel, and the meshes and files it makes."""

    def mesh(self, kind: str, mesh: MeshData, iteration: int) -> None:
        """A mesh in the input's world coordinates is ready; kind is "preview_mesh" or "final_mesh"."""

    def artifact(self, path: Path, kind: str) -> None:
        """A finished file (PLY, glTF, texture) a client may fetch; ``path`` lies in the run folder."""


def allowed_roots(reporter: Reporter) -> Sequence[Path] | None:
    """The folders a job may read photos from, when whoever runs it confines them (the server: an upload, or its
    ``--allow-root`` list); None, as on a terminal, leaves each dataset its own folder
    (``shared.dataset_source.photo_problems``)."""
    return getattr(reporter, "allowed_roots", None)
