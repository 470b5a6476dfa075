"""What one backend lets its clients keep: limits on blobs, uploads and queued jobs, and how long old things stay.

A request past a limit is refused with a ``quota`` error that says which limit and how to make room; nothing that
is already held is touched. Defaults are written once, here; ``carrara-backend serve`` options override them.
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30


@dataclass(frozen=True)
class Quotas:
    blob_bytes: int = 16 * GIB          # one uploaded file
    upload_bytes: int = 256 * GIB       # the files of one upload together
    store_bytes: int = 512 * GIB        # every blob the upload store holds or expects
    queued_jobs: int = 32               # jobs waiting their turn (the running one not counted)
    keep_days: float = 30.0             # finished, failed and cancelled jobs, and unused uploads, older are pruned
