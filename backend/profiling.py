"""Named ranges around the parts of a training step, so a profiler can say where a step's time goes.

``step_range`` is a profiler range (``carrara.<name>``) while a torch profiler runs and a shared do-nothing context
otherwise, so the engine carries the ranges at the cost of one flag test each. ``benchmarks/step_breakdown.py``
turns the ranges into the per-part table.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

RANGE_PREFIX = "carrara."
_NO_RANGE = nullcontext()


def step_range(name: str) -> AbstractContextManager:
    """A range named ``carrara.<name>`` for the running profiler; nothing when none runs."""
    if torch.autograd._profiler_enabled():
        return torch.profiler.record_function(RANGE_PREFIX + name)
    return _NO_RANGE
