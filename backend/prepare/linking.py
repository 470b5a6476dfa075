"""A dataset's files placed without copying where the disk allows: a hard link costs no space and no time, and
the photos of a dataset are never written to afterwards."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s bytes: a hard link, or a copy on a file system without them (or across
    disks)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
