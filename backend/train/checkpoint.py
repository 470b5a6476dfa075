"""Checkpoints written atomically, so a crash, a cancel or a full disk never leaves a run without a good one.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then renamed over its final
name (``ckpt_<iteration>.pt``) and the folder fsynced: a reader sees the old file or the new one, never half of
one. The newest ``KEEP`` checkpoints stay; older ones are removed only after the new one is safely in place. A
write that fails (ENOSPC, EIO) raises CheckpointError naming the file and the checkpoint still intact.

Tensors are moved to the CPU one at a time before writing (Neuralangelo issues #64/#90: copying the whole state at
once ran out of GPU memory at save time). Files load with ``weights_only=True``: only tensors and plain data.
"""
from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ...shared import atomic_write

KEEP = 2
_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")
_TEMP = re.compile(r"^\.ckpt_\d{8}\.pt\.(\d+)\.tmp$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file and what is still intact."""


def to_cpu(state: Any) -> Any:
    """A copy of a nested state with every tensor on the CPU, moved one tensor at a time."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: to_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(to_cpu(value) for value in state)
    return state


def checkpoint_path(directory: Path, iteration: int) -> Path:
    return Path(directory) / f"ckpt_{iteration:08d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(Path(directory) / n for n in names if _NAME.match(n))


def write_atomic(path: Path, write: Any, temp_path: Path | None = None) -> None:
    """shared.atomic_write's write, its OSError said as a CheckpointError naming the file (a full disk by name)."""
    try:
        atomic_write.write_atomic(path, write, temp_path)
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CheckpointError(f"{path}: could not be written ({reason})") from exc


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(data, indent=1, allow_nan=False).encode("utf-8")))


def save_checkpoint(state: dict[str, Any], directory: Path, iteration: int, *, keep: int = KEEP,
                    temp_path: Path | None = None) -> Path:
    """Write ``state`` as the checkpoint of ``iteration``; older checkpoints beyond ``keep`` are then removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, iteration)
    cpu_state = to_cpu(state)
    try:
        write_atomic(path, lambda f: torch.save(cpu_state, f), temp_path)
    except CheckpointError as exc:
        previous = [p for p in list_checkpoints(directory) if p != path]
        intact = f"; the previous checkpoint {previous[-1].name} is intact" if previous else ""
        raise CheckpointError(f"{exc}{intact}") from exc.__cause__
    for old in [p for p in list_checkpoints(directory) if p != path][:-max(0, keep - 1) or None]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:   # a truncated or foreign file raises many kinds of errors
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Remove the temporary files of writes a killed process never finished (its pid is in the name and gone)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    stale = [Path(directory) / name for name in names
             if (match := _TEMP.match(name)) and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1)))]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_latest(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that reads (a damaged newest one falls back to the one before), or None; a run
    that resumes first clears what an interrupted write left."""
    remove_stale_temp_files(directory)
    errors = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
    if errors:
        raise CheckpointError("no checkpoint in the run folder reads: " + "; ".join(errors))
    return None
