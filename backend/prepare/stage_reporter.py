"""What the Structure-from-Motion stages tell whoever runs them: stage progress, log lines, and whether to stop.

Prepare sits below the jobs, so it names only the part of the jobs' ``Reporter`` (``backend/jobs/reporting.py``)
it calls; every Reporter is a StageReporter.
"""
from __future__ import annotations

from typing import Protocol


class StageReporter(Protocol):
    def progress(self, *, iteration: int, total: int, loss: float | None, psnr: float | None, rate: float,
                 eta_s: float, phase: str = "train") -> None:
        """Work advanced: ``rate`` in iterations per second, ``eta_s`` seconds left; ``loss`` None if none applies."""

    def log(self, line: str, level: str = "info") -> None:
        """A line for the job's log (level: info, warning, error)."""

    def cancelled(self) -> bool:
        """True once someone asked to stop: the engine checkpoints and returns."""
