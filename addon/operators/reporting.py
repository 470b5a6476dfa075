"""How an operator tells the artist what happened: a refused config or a client failure becomes one ERROR report,
whose words say what to do, and CANCELLED; a success may say what it started."""
from __future__ import annotations

from typing import Callable

import bpy

from ...shared.protocol import ProtocolError
from ..client.connection import NotConnectedError

_CLIENT_FAILURES = (NotConnectedError, OSError, ValueError, RuntimeError)


def report_outcome(operator: bpy.types.Operator, action: Callable[[], str | None],
                   failed: Callable[[str], str] = str) -> set[str]:
    """Run ``action``; its message (if any) becomes an INFO report. ``failed`` frames an error's words."""
    try:
        message = action()
    except ProtocolError as exc:
        operator.report({'ERROR'}, failed(exc.message))
        return {'CANCELLED'}
    except _CLIENT_FAILURES as exc:
        operator.report({'ERROR'}, failed(str(exc)))
        return {'CANCELLED'}
    if message:
        operator.report({'INFO'}, message)
    return {'FINISHED'}
