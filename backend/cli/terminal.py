"""The Reporter for a person at a terminal: one updating progress line on stderr, log lines above it, and the log
appended to a file (the run folder's ``log.txt``, the dataset's prepare log)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from ...shared.mesh_data import MeshData

BAR_WIDTH = 24
_PLAIN_LINE_EVERY_S = 10.0


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:d}:{rest % 60:02d}"


class TerminalReporter:
    """A Reporter for a person at a terminal: one updating progress line, log lines above it, a log file."""

    def __init__(self, log_path: Path, stream: TextIO | None = None):
        self.stream = stream or sys.stderr          # looked up per reporter: sys.stderr may be replaced after import
        self.log_path = log_path
        self.interactive = self.stream.isatty()
        self._stop_requested = False
        self._last_plain = 0.0
        self._bar_shown = False

    def request_stop(self) -> None:
        self._stop_requested = True

    def progress(self, *, iteration: int, total: int, loss: float | None, psnr: float | None, rate: float,
                 eta_s: float, phase: str = "train") -> None:
        filled = int(BAR_WIDTH * min(1.0, iteration / max(total, 1)))
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {iteration}/{total}"
        if loss is not None:
            line += f"  loss {loss:.4f}"
        if psnr is not None:
            line += f"  PSNR {psnr:.2f} dB"
        line += f"  {rate:.1f} it/s  ETA {_duration(eta_s)}"
        if self.interactive:
            self.stream.write("\r" + line + "\x1b[K")
            self._bar_shown = True
        elif time.monotonic() - self._last_plain >= _PLAIN_LINE_EVERY_S or iteration >= total:
            self._last_plain = time.monotonic()
            self.stream.write(line + "\n")
        self.stream.flush()

    def log(self, line: str, level: str = "info") -> None:
        text = line if level == "info" else f"{level.upper()}: {line}"
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {level.upper():7s} {line}\n")

    def mesh(self, kind: str, mesh: MeshData, iteration: int) -> None:
        """The files are what a terminal user gets (``artifact``); in-memory meshes have no viewer here."""

    def artifact(self, path: Path, kind: str) -> None:
        self.log(f"wrote {path}")

    def cancelled(self) -> bool:
        return self._stop_requested
