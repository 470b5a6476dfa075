"""Files written so that a reader, a crash or a full disk never leaves half of one: write a hidden sibling,
flush it to the disk, rename it over the target, then make the rename itself durable.

The one writer for job records, checkpoints, reports, meshes and exports, on both sides of the protocol.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import IO, Any, Callable

#: The temporary sibling's name (``.<name>.<pid>.tmp``), so a folder scan can remove what a killed process left.
TEMP_FILE = re.compile(r"^\..+\.\d+\.tmp$")


def temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any], temp_path: Path | None = None) -> None:
    """Write ``path`` through ``write(file)``; on an OSError the temporary file is removed and the error raised.

    ``temp_path`` lets tests aim the write at a real full device (/dev/full); it is only removed afterwards when it
    is a regular file this call created.
    """
    path = Path(path)
    temp = Path(temp_path) if temp_path is not None else temp_sibling(path)
    created = not temp.exists()
    try:
        with open(temp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError:
        if created and temp.is_file():
            temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda file: file.write(data))


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON without NaN (a reader in another language would refuse it), indented for people who open it."""
    write_bytes_atomic(path, json.dumps(data, indent=1, allow_nan=False).encode("utf-8"))


def _fsync_folder(folder: Path) -> None:
    """The rename survives a power cut only once the folder is synced; Windows cannot open a folder for that."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
