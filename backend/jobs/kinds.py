"""Job kinds the server runs: a name and a loader that imports the kind's module and returns its run function
``run(config, job_dir, reporter, device) -> None``; a job given several devices (a reconstruction's ``gpus``) gets
them comma-separated, ``"cuda:0,cuda:1"``.

Each loader imports its module when a job of that kind first runs, so the server starts without paying for torch.
``run`` returns normally when the job finished or when ``reporter.cancelled()`` asked it to stop (after writing a
checkpoint into ``job_dir / "checkpoints"``); it raises ``JobFailed`` for a failure it can explain and any other
exception for a bug (its traceback reaches the server's log).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .reporting import Reporter

RunFunction = Callable[[Any, Path, Reporter, str], None]
LoadRun = Callable[[], RunFunction]


def _check_dataset() -> RunFunction:
    from .check_dataset import run
    return run


def _reconstruct() -> RunFunction:
    from .reconstruct import run_reconstruction
    return run_reconstruction


def _extract() -> RunFunction:
    from .extract import run_extract
    return run_extract


def _prepare() -> RunFunction:
    from .prepare import run
    return run


#: Each kind's loader: a new kind adds its module here and a line to this table.
_KINDS: dict[str, LoadRun] = {"check_dataset": _check_dataset, "reconstruct": _reconstruct, "extract": _extract,
                              "prepare": _prepare}


def registered_kinds() -> list[str]:
    return sorted(_KINDS)


def runner(name: str) -> RunFunction:
    """The run function of a registered kind (KeyError if there is none)."""
    return _KINDS[name]()
