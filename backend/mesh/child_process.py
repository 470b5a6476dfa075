"""Native mesh tools in a child process, so that the backend keeps answering while they run.

xatlas and fast-simplification hold Python's global lock for seconds at a time (measured here in a thread: xatlas
froze the main thread for 5.1 s of a 5.6 s call, fast-simplification for 1.6 s of 3.7 s). The server answers its
clients from the main thread, so a final asset built in the job thread went silent for longer than the
heartbeat's 3.5 s, the add-on declared the backend lost and the asset never arrived (twice on the H200). A child
process holds its own lock; the parent waits on a pipe with its lock released, can give up after a time limit,
and a crash in the native code ends only the child.

The child runs ``python -m <module>`` with the parent's ``sys.path`` (so ``carrara`` imports as it does here, also
when a benchmark put it on the path by hand); arrays travel through its pipes in NumPy's .npz format. A module
offers itself with ``serve(work)`` under ``if __name__ == "__main__"``, and should import nothing heavy (no torch).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Callable

import numpy as np

Arrays = dict[str, np.ndarray]


class ChildFailed(RuntimeError):
    """The tool failed, crashed or ran out of time; the message says which and why."""


def run_in_child(module: str, arrays: Arrays, timeout_s: float, what: str) -> Arrays:
    """``work(arrays)`` of ``module``'s ``serve`` call, in a child process; ``what`` names the tool in errors."""
    request = io.BytesIO()
    np.savez(request, **arrays)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        done = subprocess.run([sys.executable, "-m", module], input=request.getvalue(), capture_output=True,
                              timeout=timeout_s, check=False, env=env)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"{what} did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ChildFailed(f"{what} failed (exit status {done.returncode}): {' / '.join(tail) or 'no message'}")
    with np.load(io.BytesIO(done.stdout)) as reply:
        return {name: reply[name] for name in reply.files}


def serve(work: Callable[[Arrays], Arrays]) -> None:
    """The child's side: the request from stdin, ``work``'s arrays to stdout."""
    with np.load(io.BytesIO(sys.stdin.buffer.read())) as request:
        arrays = {name: request[name] for name in request.files}
    reply = io.BytesIO()
    np.savez(reply, **work(arrays))
    sys.stdout.buffer.write(reply.getvalue())
