"""Stage progress and cancel for work that runs inside pycolmap's C++: a watcher thread counts what the stage
has written so far (k of N), reports it, and turns the reporter's cancel into pycolmap's CancellationToken.

pycolmap releases the GIL while it works, so the watcher runs beside it; the reporters are
thread-safe (the server's takes its lock, the terminal's only writes lines).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import pycolmap

from .stage_reporter import StageReporter

POLL_INTERVAL_S = 0.25


class Cancelled(Exception):
    """The artist asked to stop; the pipeline leaves the work folder for the next run to clear."""


class PrepareFailed(Exception):
    """A stage cannot go on for a reason the artist can act on; the prepare job reports it as JobFailed."""


class StageProgress:
    """Reports ``done`` of ``total`` for one stage (``phase``), with a rate and an ETA."""

    def __init__(self, reporter: StageReporter, phase: str, total: int):
        self.reporter, self.phase, self.total = reporter, phase, max(int(total), 1)
        self.started = time.monotonic()
        self.last = -1

    def update(self, done: int) -> None:
        done = min(int(done), self.total)
        if done == self.last:
            return
        self.last = done
        rate = done / max(time.monotonic() - self.started, 1e-6)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        self.reporter.progress(iteration=done, total=self.total, loss=None, psnr=None, rate=rate, eta_s=eta,
                               phase=self.phase)


def check_cancel(reporter: StageReporter) -> None:
    if reporter.cancelled():
        raise Cancelled()


@contextmanager
def watched(reporter: StageReporter, progress: StageProgress | None = None,
            count: Callable[[], int] | None = None) -> Iterator[pycolmap.CancellationToken]:
    """Run a pycolmap call inside: ``count()`` is polled into ``progress``, a cancel request cancels the token.

    Raises ``Cancelled`` after the call when a cancel arrived during it (pycolmap may return early or finish)."""
    check_cancel(reporter)
    token = pycolmap.CancellationToken()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(POLL_INTERVAL_S):
            if reporter.cancelled():
                token.cancel()
            if count is not None and progress is not None:
                try:
                    progress.update(count())
                except (OSError, RuntimeError, ValueError):   # a file or database in the middle of a write
                    pass

    watcher = threading.Thread(target=watch, name="prepare-watch", daemon=True)
    watcher.start()
    try:
        yield token
    except (RuntimeError, OSError) as exc:       # a cancelled pycolmap call raises InterruptedError
        if token.is_cancelled or reporter.cancelled():
            raise Cancelled() from exc
        raise
    finally:
        stop.set()
        watcher.join()
    if token.is_cancelled or reporter.cancelled():
        raise Cancelled()


def failed(stage: str, problem: str, action: str) -> PrepareFailed:
    """A failure the artist can act on, in one shape: the stage, what went wrong, what to do."""
    return PrepareFailed(f"{stage}: {problem}. {action}")
