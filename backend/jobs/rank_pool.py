"""A reconstruct job on a pool of devices: the server's worker thread starts one rank per device through torchrun
(``train/launch.py``, as ``carrara-backend train --gpus N`` does) and says what rank 0 reports through the job's own
Reporter (``rank_reports.py``), until torchrun exits.

Everything the ranks share lives in ``<run_dir>/ranks/``: ``spec.json`` (the config and where to report),
``reports.jsonl`` (their lines), ``stop`` (cancel) and ``output.log`` (torchrun's and the ranks' own output).
Cancel (or the server's stop) creates ``stop``: rank 0 stops at its next step and every rank leaves after one
checkpoint, written by rank 0; ranks that do not end within ``STOP_GRACE_S`` are ended by torchrun, and the run
resumes from its last checkpoint of the usual cadence. A rank that fails ends the others (torchrun) and the job
fails with the first failure a rank wrote, else with the root cause torchrun printed: never a hang, as long as a
rank stuck in a collective is ended by PyTorch's collective timeout.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ...shared.jobs import ReconstructConfig, config_to_json
from ..train.launch import rank_environment, torchrun_command
from .failure import JobFailed
from .rank_reports import ReportRelay
from .reporting import Reporter, allowed_roots

RANK_MODULE = "carrara.backend.jobs.reconstruct_rank"
#: How often the worker relays the ranks' lines and looks at torchrun.
POLL_S = 0.1
#: After a cancel, how long the ranks have to checkpoint and leave before torchrun is asked to end them.
STOP_GRACE_S = 60.0
#: How long torchrun has to end its ranks (it sends SIGTERM, then SIGKILL) before it is killed itself.
END_GRACE_S = 40.0
#: Lines of torchrun's output a failure without a rank's own words shows.
OUTPUT_TAIL_LINES = 6


def pool_device(devices: list[str], requested: str) -> tuple[str, list[int] | None]:
    """The ranks' device ('cuda' or 'cpu') and the GPU indices they take: GPUs when every device of the pool is
    one and the config does not ask for the CPU; else CPU ranks over gloo."""
    if requested != "cpu" and all(d.startswith("cuda:") for d in devices):
        return "cuda", [int(d.partition(":")[2]) for d in devices]
    return "cpu", None


def train_on_pool(config: ReconstructConfig, run_dir: Path, reporter: Reporter, devices: list[str]) -> None:
    """Train ``config`` on one rank per device of ``devices`` and deliver its meshes through ``reporter``."""
    folder = run_dir / "ranks"
    shutil.rmtree(folder, ignore_errors=True)       # a previous attempt's lines and stop request
    folder.mkdir(parents=True)
    roots = allowed_roots(reporter)
    device, gpus = pool_device(devices, config.device)
    spec = {"config": config_to_json(config), "run_dir": str(run_dir), "device": device,
            "allowed_roots": None if roots is None else [str(root) for root in roots],
            "reports": str(folder / "reports.jsonl"), "stop": str(folder / "stop"), "server_pid": os.getpid()}
    (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    reporter.log(f"training on {len(devices)} devices ({', '.join(devices)}) through torchrun"
                 f"{'' if device == 'cuda' else ', as CPU processes over gloo'}; rank 0 reports and writes")
    with open(folder / "output.log", "wb") as output:
        process = subprocess.Popen(torchrun_command(len(devices), RANK_MODULE, [str(folder / "spec.json")]),
                                   env=rank_environment(device, gpus), stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    relay = ReportRelay(folder / "reports.jsonl", reporter)
    try:
        code = _watch(process, relay, reporter, folder / "stop")
    finally:
        _end(process)
    relay.relay()
    if code != 0 and not reporter.cancelled():
        raise JobFailed(_failure(relay, reporter, folder / "output.log", code, len(devices)))


def _watch(process: subprocess.Popen, relay: ReportRelay, reporter: Reporter, stop: Path) -> int:
    """Relay the ranks' lines until torchrun exits; its exit code. A cancel asks the ranks to stop, then, past
    ``STOP_GRACE_S``, asks torchrun to end them."""
    stop_asked: float | None = None
    while True:
        try:
            return process.wait(POLL_S)
        except subprocess.TimeoutExpired:
            pass
        relay.relay()
        if stop_asked is None and reporter.cancelled():
            stop.touch()
            stop_asked = time.monotonic()
        elif stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE_S:
            _end(process)
            return process.returncode


def _end(process: subprocess.Popen) -> None:
    """torchrun ends its ranks on SIGTERM; one that ignores it is killed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(END_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class RankEnd:
    """How torchrun saw one failed rank end (its ChildFailedError report)."""

    rank: int
    exit_code: int          # negative: ended by that signal
    traceback: str
    root_cause: bool        # torchrun's first observed failure


_RANK_END = re.compile(r"^\s*rank\s*:\s*(\d+).*\n\s*exitcode\s*:\s*(-?\d+).*\n(?:.*\n)*?\s*traceback\s*:\s*(.*)$",
                       re.MULTILINE)


def rank_ends(output: str) -> list[RankEnd]:
    root = output.rfind("Root Cause")
    return [RankEnd(int(m[1]), int(m[2]), m[3].strip(), 0 <= root < m.start()) for m in _RANK_END.finditer(output)]


def _failure(relay: ReportRelay, reporter: Reporter, output: Path, code: int, ranks: int) -> str:
    """What the job failed of. A rank killed by a signal torchrun did not send (the OOM killer's, a crash's) says
    nothing itself and is the cause; else the failure the root-cause rank wrote (another rank's words are often
    only that its peer went away), else the first a rank wrote (a bug's traceback goes to the job's log), else
    torchrun's own account."""
    text = output.read_text(encoding="utf-8", errors="replace")
    ends = rank_ends(text)
    killed = [end for end in ends if end.exit_code < 0 and end.exit_code != -signal.SIGTERM]
    if killed:
        return f"rank {killed[0].rank} of {ranks} ended: exit code {killed[0].exit_code}, {killed[0].traceback}"
    written = {line["rank"]: line for line in reversed(relay.failures)}     # each rank's first
    root = next((end.rank for end in ends if end.root_cause), None)
    first = written.get(root) or (relay.failures[0] if relay.failures else None)
    if first is not None:
        for line in first["details"].splitlines():
            reporter.log(line, "error")
        bug = " (a bug: the job's log has its traceback)" if first["details"] else ""
        return f"rank {first['rank']} of {ranks}: {first['failed']}{bug}"
    if ends:
        end = next((end for end in ends if end.root_cause), ends[0])
        return f"rank {end.rank} of {ranks} ended: exit code {end.exit_code}, {end.traceback}"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-OUTPUT_TAIL_LINES:]
    return f"training on {ranks} ranks ended with exit code {code}: {' | '.join(tail)}"
