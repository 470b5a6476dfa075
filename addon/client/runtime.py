"""What the client holds that a .blend cannot: the connection, the local backend process, transfers in flight.

Everything worth keeping lives in the scene's runs (job ids and object names), so a reopened file re-attaches; the
runtime starts empty again when the add-on unregisters (``reset_runtime``). Read it through ``runtime()`` at each
use: a reference kept across an unregister would point at the old one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...shared.protocol import Message
from .backend_process import LocalBackend
from .connection import Connection
from .dataset_fetch import DatasetFetch
from .job_files import JobFiles
from .transfers import ArtifactDownload, DatasetUpload


@dataclass
class Launch:
    """A run on its way to becoming a job: submitted with its folder, or uploading the dataset first."""

    kind: str
    config: dict[str, Any]
    files: Callable[[], dict[str, Path]]      # lists the dataset's files (run off the main thread)
    upload: DatasetUpload | None = None
    upload_config: dict[str, Any] | None = None   # the config to submit with the upload, when it differs


@dataclass
class ClientRuntime:
    connection: Connection | None = None
    connection_key: tuple[str, str, str] = ("", "", "")
    wanted: bool = False                        # someone asked for a backend, or the file tracks jobs
    file_synced: bool = False                   # the open file's runs have been followed
    last_open: float = -1e9
    local: LocalBackend = field(default_factory=LocalBackend)
    downloads: dict[tuple[str, str], ArtifactDownload] = field(default_factory=dict)   # (job, kind) -> download
    launches: dict[str, Launch] = field(default_factory=dict)                          # run name -> launch
    backlog: list[Message] = field(default_factory=list)      # received while the interface was locked
    files: JobFiles = field(default_factory=JobFiles)         # results and logs on their way
    dataset_fetches: dict[str, DatasetFetch] = field(default_factory=dict)   # job -> a prepared dataset on its way
    dirty: bool = False                         # a run or the status changed: the panels need a redraw


_current = ClientRuntime()


def runtime() -> ClientRuntime:
    return _current


def reset_runtime() -> None:
    global _current
    _current = ClientRuntime()


def set_if_changed(target: Any, name: str, value: Any) -> None:
    """Assign only on change, and remember that the panel needs a redraw."""
    if getattr(target, name) != value:
        setattr(target, name, value)
        _current.dirty = True
