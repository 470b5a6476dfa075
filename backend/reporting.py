"""How long-running engine work talks to whoever runs it: the CLI's progress bar or the server's job events.

The engine (training, extraction) only ever calls a Reporter; it never knows whether a terminal or a Blender
session is listening. The server's job context and the CLI each implement this protocol once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from ..shared.mesh_data import MeshData


class Reporter(Protocol):
    def progress(self, *, iteration: int, total: int, loss: float | None, psnr: float | None, rate: float,
                 eta_s: float, phase: str = "train") -> None:
        """Work advanced: ``rate`` in iterations per second, ``eta_s`` seconds left; ``loss`` None if none applies."""

    def log(self, line: str, level: str = "info") -> None:
        """A line for the job's log (level: info, warning, error)."""

    def mesh(self, kind: str, mesh: MeshData, iteration: int) -> None:
        """A mesh in the input's world coordinates is ready; kind is "preview_mesh" or "final_mesh"."""

    def artifact(self, path: Path, kind: str) -> None:
        """A finished file (PLY, glTF, texture) a client may fetch; ``path`` lies in the run folder."""

    def cancelled(self) -> bool:
        """True once someone asked to stop: the engine checkpoints and returns."""


def allowed_roots(reporter: Reporter) -> Sequence[Path] | None:
    """The folders a job may read photos from, when whoever runs it confines them (the server: an upload, or its
    ``--allow-root`` list); None, as on a terminal, leaves each dataset its own folder
    (``shared.dataset_source.photo_problems``)."""
    return getattr(reporter, "allowed_roots", None)
