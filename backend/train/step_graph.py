"""A training step replayed as one CUDA graph, so the GPU stops waiting for Python to issue its kernels.

A step issues about two thousand small kernels; at ``preview`` the H100 sat idle for 46 % of a step's wall time
waiting for them (benchmarks/NOTES-presets.md). Captured once, the whole step (rays, rendering, losses, backward,
gradient check, optimizer) is one launch. What it computes is unchanged; the graph only fixes *where* it reads
and writes, so:

- the per-step inputs (the pixel batch, the schedule's cos-annealing ratio and curvature weight) are copied into
  buffers the graph reads, and learning rates are tensors the trainer fills in place;
- what the graph bakes in as plain numbers (the active hash levels and the gradient step) is its ``key``: a new
  key (about 16 times in a run) drops the graph, runs one step eagerly on the capture stream (compiling and
  caching whatever the new levels need), then captures again;
- replacing state tensors (a rollback or a resume loads the optimizer's state anew) calls ``reset()``.

Should a capture fail (an operation that needs the host, on some other PyTorch version), the run goes on
uncaptured, slower, with a warning in its log: a run is never lost to the speed-up.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Hashable

import torch


@dataclass
class StepInputs:
    """What one step reads besides the model's and optimizer's own state."""

    view: torch.Tensor                    # (R,) photo of each ray
    pixels: torch.Tensor                  # (R, 2) pixel centres
    rgb: torch.Tensor                     # (R, 3) target colour
    alpha: torch.Tensor | None            # (R,) mask, for photos that carry one
    cos_ratio: torch.Tensor | float       # NeuS cos annealing (schedules.py)
    curvature_weight: torch.Tensor | float

    def as_buffers(self, device: torch.device) -> "StepInputs":
        """Fresh tensors holding these values, numbers as 0-d float32 tensors: what a captured graph reads."""
        def buffer(value: torch.Tensor | float | None) -> torch.Tensor | None:
            if value is None:
                return None
            if isinstance(value, torch.Tensor):
                return value.detach().clone()
            return torch.tensor(float(value), dtype=torch.float32, device=device)
        return StepInputs(**{f.name: buffer(getattr(self, f.name)) for f in fields(self)})

    def copy_into(self, buffers: "StepInputs") -> None:
        for f in fields(self):
            value, target = getattr(self, f.name), getattr(buffers, f.name)
            if target is None:
                continue
            if isinstance(value, torch.Tensor):
                target.copy_(value, non_blocking=True)
            else:
                target.fill_(float(value))


class StepGraph:
    """Runs ``compute`` (one whole step, returning a tensor of figures) eagerly or as a captured CUDA graph."""

    def __init__(self, compute: Callable[[StepInputs], torch.Tensor], device: torch.device,
                 generators: tuple[torch.Generator, ...], log: Callable[[str, str], None]):
        self._compute = compute
        self._log = log
        self._device = device
        self._generators = generators
        self._stream = torch.cuda.Stream(device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._buffers: StepInputs | None = None
        self._figures: torch.Tensor | None = None
        self._key: Hashable = None
        self.captures = 0
        self.unavailable: str | None = None     # why capturing failed; every later step then runs eagerly

    def reset(self) -> None:
        """Forget the graph (its memory goes back to the allocator); the next step runs eagerly, then captures."""
        self._graph = self._buffers = self._figures = None
        self._key = None

    def run(self, key: Hashable, inputs: StepInputs) -> torch.Tensor:
        """One step. The figures returned by a replay are the graph's own buffer: read them before the next step."""
        if self.unavailable is not None:
            return self._compute(inputs)
        if key != self._key:
            self.reset()
            self._key = key
            return self._on_capture_stream(lambda: self._compute(inputs))
        if self._graph is None:
            try:
                self._capture(inputs)
            except RuntimeError as exc:         # torch.AcceleratorError and the capture's own errors
                self.reset()
                self.unavailable = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self._log(f"the training step could not be captured as a CUDA graph ({self.unavailable}); "
                          "training goes on uncaptured, which is slower", "warning")
                return self._compute(inputs)
        else:
            inputs.copy_into(self._buffers)
        self._graph.replay()
        return self._figures

    def _on_capture_stream(self, work: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Eager work on the stream captures use (PyTorch's rule: warm up where you capture)."""
        current = torch.cuda.current_stream(self._device)
        self._stream.wait_stream(current)
        with torch.cuda.stream(self._stream):
            result = work()
        current.wait_stream(self._stream)
        result.record_stream(current)    # read on the trainer's stream: not to be reused before that is done
        return result

    def _capture(self, inputs: StepInputs) -> None:
        self._buffers = inputs.as_buffers(self._device)
        graph = torch.cuda.CUDAGraph()
        for generator in self._generators:
            graph.register_generator_state(generator)
        torch.cuda.synchronize(self._device)
        torch.cuda.empty_cache()    # the eager step's cached blocks: the graph's own pool holds its activations
        # thread_local: the server's other threads (previews, uploads) may allocate while this one captures
        with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
            self._figures = self._compute(self._buffers)
        self._graph = graph
        self.captures += 1
