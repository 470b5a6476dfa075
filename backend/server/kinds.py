"""Job kinds the server can run: a name and a function ``run(config, job_dir, reporter, device) -> None``.

Adding a kind is one line at the bottom of this module::

    register_kind("reconstruct", "carrara.backend.reconstruct:run_reconstruction")

A target given as ``"module:function"`` is imported when a job of that kind first runs, so the server starts
without paying for torch. ``run`` returns normally when the job finished or when ``reporter.cancelled()`` asked
it to stop (after writing a checkpoint into ``job_dir / "checkpoints"``); it raises ``JobFailed`` for a failure
it can explain and any other exception for a bug (its traceback reaches the client).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Union

from ..reporting import Reporter

RunFunction = Callable[[Any, Path, Reporter, str], None]


class JobFailed(Exception):
    """A job that cannot succeed for a reason the user can act on; the message says what and where."""


_KINDS: dict[str, Union[RunFunction, str]] = {}


def register_kind(name: str, run: Union[RunFunction, str]) -> None:
    """Make job kind ``name`` runnable; ``run`` is a function or a lazily imported "module:function"."""
    _KINDS[name] = run


def registered_kinds() -> list[str]:
    return sorted(_KINDS)


def runner(name: str) -> RunFunction:
    """The run function of a registered kind (KeyError if there is none)."""
    target = _KINDS[name]
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
        _KINDS[name] = target
    return target


register_kind("check_dataset", "carrara.backend.server.check_dataset:run")
register_kind("reconstruct", "carrara.backend.reconstruct:run_reconstruction")
register_kind("extract", "carrara.backend.reconstruct:run_extract")
register_kind("prepare", "carrara.backend.prepare.run:run")
