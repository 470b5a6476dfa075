"""What the ranks of a job on several devices say, as JSON lines in one file: written by the ranks, read by the
server's worker thread, which says it again through the job's own Reporter (so job.json, events and artifacts are
made exactly as for a job on one device).

Rank 0 writes progress, log lines, meshes (an ``.npz`` beside the file, named in its line) and artifacts; any rank
writes its failure. Each line is one ``write`` to a file opened for appending, so lines of two ranks never mix.
Cancel travels the other way: the worker creates the stop file and ``cancelled`` sees it (the trainer makes rank
0's answer every rank's); the ranks also stop, with a checkpoint, when the server's process is gone, so they never
train on beside a restarted server that resumes the same job.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ...shared.mesh_data import MeshData
from .reporting import Reporter


class RankReporter:
    """A Reporter for one rank: rank 0's reports become lines of ``reports``; other ranks say nothing."""

    def __init__(self, reports: Path, stop: Path, rank: int, allowed_roots: Sequence[Path] | None,
                 server_pid: int):
        self.reports = reports
        self.stop = stop
        self.rank = rank
        self.server_pid = server_pid
        #: the folders the server lets this job read photos from (``reporting.allowed_roots``)
        self.allowed_roots = allowed_roots
        self._meshes = 0

    def progress(self, *, iteration: int, total: int, loss: float | None, psnr: float | None, rate: float,
                 eta_s: float, phase: str = "train") -> None:
        self._say({"progress": {"iteration": iteration, "total": total, "loss": loss, "psnr": psnr, "rate": rate,
                                "eta_s": eta_s, "phase": phase}})

    def log(self, line: str, level: str = "info") -> None:
        self._say({"log": line, "level": level})

    def mesh(self, kind: str, mesh: MeshData, iteration: int) -> None:
        self._meshes += 1
        path = self.reports.with_name(f"mesh_{self._meshes:05d}.npz")
        mesh.write(path)
        self._say({"mesh": kind, "path": str(path), "iteration": iteration})

    def artifact(self, path: Path, kind: str) -> None:
        self._say({"artifact": str(path), "kind": kind})

    def cancelled(self) -> bool:
        return self.stop.exists() or _gone(self.server_pid)

    def failed(self, message: str, details: str = "") -> None:
        """This rank cannot go on: any rank says so, with the lines that explain it (a traceback, for a bug)."""
        self._write({"failed": message, "rank": self.rank, "details": details})

    def _say(self, line: dict[str, Any]) -> None:
        if self.rank == 0:
            self._write(line)

    def _write(self, line: dict[str, Any]) -> None:
        with open(self.reports, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


class ReportRelay:
    """The worker's side: reads the lines the ranks have written so far and says them to ``reporter``."""

    def __init__(self, reports: Path, reporter: Reporter):
        self.reports = reports
        self.reporter = reporter
        self.failures: list[dict[str, Any]] = []     # the ranks' failure lines, first first
        self._offset = 0

    def relay(self) -> None:
        """Every complete line written since the last call (a line still being written waits for the next)."""
        try:
            with open(self.reports, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data[:data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for raw in complete.splitlines():
            self._say(json.loads(raw))

    def _say(self, line: dict[str, Any]) -> None:
        if "progress" in line:
            self.reporter.progress(**line["progress"])
        elif "log" in line:
            self.reporter.log(line["log"], line["level"])
        elif "mesh" in line:
            path = Path(line["path"])
            self.reporter.mesh(line["mesh"], MeshData.read(path), line["iteration"])
            path.unlink(missing_ok=True)
        elif "artifact" in line:
            self.reporter.artifact(Path(line["artifact"]), line["kind"])
        elif "failed" in line:
            self.failures.append(line)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (POSIX; elsewhere signal 0 would end it, so it is taken to live)."""
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:     # alive, and another user's: the pid was reused
        return True
    return False
