"""Paths a client names (upload file lists, artifact names), checked before they touch the disk.

A client may only ever name a place inside a folder the server chose: no absolute paths, no drive letters, no
``..``, no backslashes, and no symlink that leads out of the folder.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ...shared.protocol import ErrorCode, ProtocolError

MAX_PATH_CHARS = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative_path(text: object, field: str) -> PurePosixPath:
    """A '/'-separated relative path with no way out of its folder, or BAD_FIELD naming ``field``."""
    if not isinstance(text, str) or not text:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{field} must be a non-empty relative path")
    if len(text) > MAX_PATH_CHARS or "\0" in text:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{field} {text[:80]!r} is too long or holds a NUL character")
    if "\\" in text:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{field} {text!r} holds a backslash; separate folders with '/'")
    if text.startswith("/") or _DRIVE.match(text):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{field} {text!r} is absolute; paths must be relative")
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"{field} {text!r} has an empty, '.' or '..' component; it must stay inside its folder")
    return PurePosixPath(text)


def confined_path(root: Path, relative: PurePosixPath, field: str) -> Path:
    """``root / relative``, refused if symlinks resolve it to a place outside ``root``."""
    base = root.resolve()
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{field} {str(relative)!r} leads outside its folder")
    return candidate
