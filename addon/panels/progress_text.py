"""A run's progress in words, as the panels and the status bar show it: iteration/total, loss, PSNR, rate, ETA.

Plain functions of the run's properties (no drawing), so the client's tick can put the same words in the status
bar without importing a panel.
"""
from __future__ import annotations

from ...shared.protocol import JobState
from ..properties.runs import UNKNOWN, UPLOADING, RunProperties


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def progress_text(run: RunProperties) -> str:
    """'1200/20000 · loss 0.0213 · 24.1 dB · 35.2 it/s · ETA 8m 54s' (unknown figures left out)."""
    if run.total <= 0:
        return run.state
    parts = [f"{run.phase + ' ' if run.phase and run.phase != 'train' else ''}{run.iteration}/{run.total}"]
    if run.loss != UNKNOWN:
        parts.append(f"loss {run.loss:.4f}")
    if run.psnr != UNKNOWN:
        parts.append(f"{run.psnr:.1f} dB")
    if run.rate != UNKNOWN:
        parts.append(f"{run.rate:.1f} it/s")
    if run.eta_s != UNKNOWN and run.state == JobState.RUNNING:
        parts.append(f"ETA {duration_text(run.eta_s)}")
    return " · ".join(parts)


def upload_text(run: RunProperties) -> str:
    return f"sending photos {run.progress:.0%}"


def status_bar_text(run: RunProperties) -> str:
    """The status bar's line for a busy run."""
    if run.state == UPLOADING:
        return f"Carrara: {upload_text(run)}"
    return f"Carrara {run.kind}: {progress_text(run)}"
