"""The one failure a job raises for a reason the user can act on; any other exception is a bug.

The server turns ``JobFailed`` into a failed job whose message the client shows (no traceback); the CLI prints it
and exits 1. Layers below the jobs raise their own errors (``DatasetError``, ``CheckpointError``,
``PrepareFailed``...), and the job that calls them turns those into ``JobFailed``.
"""
from __future__ import annotations


class JobFailed(Exception):
    """A job that cannot succeed for a reason the user can act on; the message says what and where."""
