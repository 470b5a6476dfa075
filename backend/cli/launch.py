"""``carrara-backend train --gpus N``: the CLI runs itself again under torchrun, one process per GPU of this host.

PyTorch's own launcher (``python -m torch.distributed.run --standalone``) starts the N processes, gives each its
RANK/LOCAL_RANK and a rendezvous on a free local port, and ends them all when one fails; the processes then train
as ``backend/train/distributed.py`` says. N=1 trains in this process, as before. ``--device cpu --gpus N`` starts
N CPU processes over gloo instead: slow, and meant for tests and for trying the path on a machine without GPUs.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from ..train.distributed import BACKEND_ENV, Distributed


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


def other_devices(gpus: int, device: str) -> list[str]:
    """The devices besides the first that a ``--gpus N`` extraction shares its blocks with (CPU: N-1 more threads)."""
    return [f"cuda:{index}" for index in range(1, gpus)] if device.startswith("cuda") else ["cpu"] * (gpus - 1)


def torchrun_command(gpus: int, cli_argv: list[str]) -> list[str]:
    """The same CLI call, under torchrun with one process per GPU on this host."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus),
            "-m", "carrara.backend", *cli_argv]


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ


def train_on_gpus(args: argparse.Namespace, cli_argv: list[str]) -> int:
    """Train in this process (one GPU, or one rank already started by torchrun), or start torchrun for N."""
    from .train import train_from_cli

    if under_torchrun() or args.gpus == 1:
        try:
            return train_from_cli(args)
        finally:
            Distributed.from_env().close()
    import torch

    problem = gpus_problem(args.gpus, args.device, torch.cuda.device_count())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.device == "cpu":
        env[BACKEND_ENV] = "gloo"
    where = "CPU processes over gloo" if args.device == "cpu" else "GPUs"
    print(f"training on {args.gpus} {where} through torchrun (rank 0 reports and writes)", file=sys.stderr,
          flush=True)
    # torchrun in a session of its own: a Ctrl-C reaches the ranks once, forwarded by torchrun, so each stops after
    # its step with a checkpoint (the terminal's own SIGINT plus torchrun's would be the second, aborting one).
    process = subprocess.Popen(torchrun_command(args.gpus, cli_argv), env=env, start_new_session=True)
    interrupts = 0
    while True:
        try:
            code = process.wait()
            return 130 if interrupts else code      # torchrun itself ends failed on a signal it forwarded
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                process.send_signal(signal.SIGINT)
            else:                   # a second Ctrl-C aborts, as it does on one GPU
                os.killpg(process.pid, signal.SIGKILL)
