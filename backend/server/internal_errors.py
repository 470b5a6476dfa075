"""Bugs in the server or in a job: the client learns an error id, the server's log keeps the traceback.

A traceback names files, paths and values of the backend's machine; a remote client has no use for them and an
attacker much. The id lets an artist's bug report and the operator's log meet.
"""
from __future__ import annotations

import sys
import traceback

from ...shared.protocol import new_error_id


def log_internal_error(what: str) -> str:
    """Print the current exception's traceback to the server's log under a new error id; return the id."""
    error_id = new_error_id()
    print(f"carrara-backend: internal error {error_id} ({what}):\n{traceback.format_exc()}", file=sys.stderr,
          flush=True)
    return error_id
