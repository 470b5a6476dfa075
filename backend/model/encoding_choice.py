"""Which hash-grid implementation a run computes with; ``auto`` takes the fastest that runs here.

tiny-cuda-nn (``tcnn``) where its PyTorch bindings import and there is a GPU, else our Triton kernel on CUDA, else
the PyTorch reference. All three compute one function on one table layout (tcnn's: level-major, entry, feature,
with tcnn's per-level sizes; see hashgrid.py), so a run records the implementation it resolved
(``SdfFieldConfig.encoding``) for resume and extract to rebuild, and where that one does not run (a tcnn run on a
machine without tinycudann, a GPU run meshed on the CPU) the checkpoint loads as it is into the one that does.
"""
from __future__ import annotations

import functools

import torch

from ...shared.jobs import ENCODINGS
from .hashgrid import triton_importable

# tiny-cuda-nn is not on PyPI: its bindings build from source with nvcc (NVlabs/tiny-cuda-nn README).
TCNN_INSTALL = "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"


class EncodingUnavailable(RuntimeError):
    """The encoding asked for cannot run on this machine or device."""


@functools.cache
def tcnn_import_error() -> str | None:
    """Why ``import tinycudann`` fails here, or None when it works."""
    try:
        import tinycudann  # noqa: F401
    except Exception as exc:   # a build for another CUDA or GPU raises more than ImportError
        return f"{type(exc).__name__}: {exc}"
    return None


def choose_encoding(requested: str, device: torch.device | str) -> str:
    """The implementation ('tcnn', 'triton' or 'torch') for ``requested`` on ``device``, or a clear error."""
    if requested not in ENCODINGS:
        raise ValueError(f"encoding must be one of {list(ENCODINGS)}, not {requested!r}")
    on_cuda = torch.device(device).type == "cuda"
    if requested == "auto":
        if on_cuda and tcnn_import_error() is None:
            return "tcnn"
        return "triton" if on_cuda and triton_importable() else "torch"
    if requested == "tcnn" and tcnn_import_error() is not None:
        raise EncodingUnavailable(
            f"encoding 'tcnn' (--encoding tcnn) needs tiny-cuda-nn's PyTorch bindings, which do not import here "
            f"({tcnn_import_error()}); install them with `{TCNN_INSTALL}` (a source build: it needs the CUDA "
            "toolkit that matches torch's CUDA), or use encoding 'auto' or 'triton', which compute the same function")
    if requested in ("tcnn", "triton") and not on_cuda:
        raise EncodingUnavailable(f"encoding '{requested}' (--encoding {requested}) runs on a CUDA GPU, and this run "
                                  f"is on {torch.device(device)}; use encoding 'auto' or 'torch'")
    if requested == "triton" and not triton_importable():
        raise EncodingUnavailable("encoding 'triton' (--encoding triton) needs the triton package (pip install "
                                  "triton; Linux only); use encoding 'auto' or 'torch'")
    return requested


def encoding_for_checkpoint(recorded: str, requested: str, device: torch.device | str) -> tuple[str, str | None]:
    """The implementation a resumed or re-meshed run computes with, and a line for the log when it is not the one
    the checkpoint recorded: ``auto`` rebuilds the recorded one where it runs here, else takes auto's choice."""
    if requested != "auto":
        chosen = choose_encoding(requested, device)
    else:
        try:
            chosen = choose_encoding(recorded, device)
        except EncodingUnavailable as exc:
            chosen = choose_encoding("auto", device)
            return chosen, (f"the run was trained with encoding '{recorded}', which does not run here ({exc}); "
                            f"continuing with '{chosen}', which reads the same table layout")
    if recorded in ("auto", chosen):   # "auto": a checkpoint from before the choice was recorded
        return chosen, None
    return chosen, (f"the run was trained with encoding '{recorded}' and continues with '{chosen}', which reads "
                    "the same table layout")
