"""``carrara-backend train --gpus N``: the CLI runs itself again under torchrun, one process per GPU of this host.

The command and environment are ``backend/train/launch.py``'s (the server's multi-GPU jobs start their ranks the
same way). N=1 trains in this process, as before. ``--device cpu --gpus N`` starts N CPU processes over gloo
instead: slow, and meant for tests and for trying the path on a machine without GPUs.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from ..train.distributed import Distributed
from ..train.launch import gpus_problem, rank_environment, torchrun_command


def other_devices(gpus: int, device: str) -> list[str]:
    """The devices besides the first that a ``--gpus N`` extraction shares its blocks with (CPU: N-1 more threads)."""
    return [f"cuda:{index}" for index in range(1, gpus)] if device.startswith("cuda") else ["cpu"] * (gpus - 1)


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
    env = rank_environment("cpu" if args.device == "cpu" else "cuda")
    where = "CPU processes over gloo" if args.device == "cpu" else "GPUs"
    print(f"training on {args.gpus} {where} through torchrun (rank 0 reports and writes)", file=sys.stderr,
          flush=True)
    # torchrun in a session of its own: a Ctrl-C reaches the ranks once, forwarded by torchrun, so each stops after
    # its step with a checkpoint (the terminal's own SIGINT plus torchrun's would be the second, aborting one).
    process = subprocess.Popen(torchrun_command(args.gpus, "carrara.backend", cli_argv), env=env,
                               start_new_session=True)
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
