"""Starting N training ranks on one host through torchrun: the command, the environment and the words for a count
that cannot run here. ``carrara-backend train --gpus N`` (``backend/cli/launch.py``) and the server's reconstruct
job on a pool of devices (``backend/jobs/rank_pool.py``) both start their ranks this way.

PyTorch's own launcher (``python -m torch.distributed.run --standalone``) starts the N processes, gives each its
RANK/LOCAL_RANK and a rendezvous on a free local port, and ends them all when one fails; the processes then train
as ``distributed.py`` says. CPU ranks talk over gloo (slow: for tests and for trying the path without GPUs).
"""
from __future__ import annotations

import os
import sys

from .distributed import BACKEND_ENV


def gpus_problem(gpus: int, device: str, visible_gpus: int) -> str | None:
    """Why ``--gpus`` cannot run here (None when it can), in words that say what to do."""
    if gpus < 1:
        return f"--gpus {gpus}: give 1 or more"
    if gpus == 1 or device == "cpu":
        return None
    if visible_gpus == 0:
        return (f"--gpus {gpus} asks for {gpus} GPUs but torch sees none; add --device cpu to run {gpus} CPU "
                "processes over gloo instead (for testing)")
    if gpus > visible_gpus:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        limit = f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""
        return f"--gpus {gpus} asks for more GPUs than torch sees on this host: {visible_gpus}{limit}; use --gpus " \
               f"{visible_gpus} or fewer"
    return None


def torchrun_command(ranks: int, module: str, argv: list[str]) -> list[str]:
    """``python -m module argv`` under torchrun, one process per rank on this host."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
            "-m", module, *argv]


def rank_environment(device: str, gpu_indices: list[int] | None = None) -> dict[str, str]:
    """This process's environment for ranks on ``device`` ('cpu' or 'cuda'): gloo for CPU ranks (even on a host
    with GPUs); ``gpu_indices`` (torch's indices here) narrow CUDA_VISIBLE_DEVICES so that local rank k takes the
    k-th of them."""
    env = dict(os.environ)
    if device == "cpu":
        env[BACKEND_ENV] = "gloo"
    if gpu_indices is not None:
        # torch's index k is the k-th entry of an existing CUDA_VISIBLE_DEVICES, not the k-th GPU of the host
        shown = [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",")] if "CUDA_VISIBLE_DEVICES" in env else None
        env["CUDA_VISIBLE_DEVICES"] = ",".join(shown[i] if shown else str(i) for i in gpu_indices)
    return env
