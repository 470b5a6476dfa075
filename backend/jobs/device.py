"""Where a job computes: the device a config or the server asks for, checked against what torch sees."""
from __future__ import annotations

import torch

from .failure import JobFailed


def resolve_device(requested: str) -> str:
    """'auto' takes the GPU when torch sees one; 'cuda' without one is a clear error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise JobFailed("device 'cuda' was asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    return requested


def make_current(device: torch.device) -> None:
    """A server worker runs its job on GPU k from its own thread: kernels that follow the thread's current device
    (Triton's, NCCL's) must launch there, not on GPU 0."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
