"""The one owner of the local backend process: start it without blocking, notice when it dies, restart it at a
limited rate, and say why it stopped (the tail of its log) so the panel can show it.

The backend runs as ``<python> -m carrara.backend serve --bind <address> --workspace <folder>``, in its own
session, with its output appended to ``<workspace>/backend.log``. That Python needs Carrara's backend installed
(``pip install carrara``); in a development checkout whose folder is named ``carrara`` the checkout itself is put on
PYTHONPATH. No bpy here.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

#: The folder of the root package (the extension's folder, or a development checkout).
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
RESTART_MIN_INTERVAL_S = 5.0
#: More starts than this within START_WINDOW_S and the add-on stops restarting until asked by hand.
MAX_STARTS_PER_WINDOW = 3
START_WINDOW_S = 120.0
STOP_WAIT_S = 3.0
LOG_TAIL_BYTES = 1500


def is_local_address(address: str) -> bool:
    """Only a backend on this machine can be started by the add-on."""
    scheme, _, rest = address.partition("://")
    if scheme == "ipc":
        return True
    host = urlsplit(f"//{rest}").hostname or ""
    return scheme == "tcp" and (host in ("localhost", "::1") or host.startswith("127."))


def something_listens(address: str) -> bool:
    """Whether a process already serves ``address`` on this machine (a loopback connect answers at once)."""
    scheme, _, rest = address.partition("://")
    if scheme == "ipc":
        return Path(rest).exists()
    parts = urlsplit(f"//{rest}")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.05):
            return True
    except (OSError, ValueError):
        return False


def find_python(preference: str) -> str:
    """The interpreter for the backend: the preference, else the first of the documented fallbacks that exists."""
    if preference:
        if not Path(preference).is_file():
            raise FileNotFoundError(f"the Backend Python in the preferences, {preference}, does not exist")
        return preference
    venv = PACKAGE_ROOT / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    candidates = [os.environ.get("CARRARA_BACKEND_PYTHON", ""), str(venv)]
    if importlib.util.find_spec("torch") is not None and _backend_importable():
        candidates.append(sys.executable)      # Blender as a Python module, inside the backend's environment
    candidates += [shutil.which("python3") or "", shutil.which("python") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise FileNotFoundError("no Python for the local backend was found: set 'Backend Python' in the add-on's "
                            "preferences to an interpreter where 'pip install carrara' was run")


def _backend_importable() -> bool:
    try:
        return importlib.util.find_spec("carrara.backend") is not None
    except ModuleNotFoundError:
        return False


class LocalBackend:
    """The backend process this Blender session started, if any."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.note = ""                          # what happened last, for the panel
        self._starts: deque[float] = deque()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def may_start(self, now: float | None = None) -> bool:
        """The restart limit: not within RESTART_MIN_INTERVAL_S of the last start, not too often in a window."""
        now = time.monotonic() if now is None else now
        while self._starts and now - self._starts[0] > START_WINDOW_S:
            self._starts.popleft()
        if self._starts and now - self._starts[-1] < RESTART_MIN_INTERVAL_S:
            return False
        return len(self._starts) < MAX_STARTS_PER_WINDOW

    def start(self, address: str, workspace: Path, python_preference: str = "", *, by_hand: bool = False) -> None:
        """Start the backend (non-blocking). ``by_hand`` lifts the restart limit; errors say what to fix."""
        if self.running:
            return
        if not is_local_address(address):
            raise ValueError(f"{address} is not on this machine; only a local backend can be started from Blender")
        if not by_hand and not self.may_start():
            raise RuntimeError(f"not restarting the local backend again so soon: {self.note}")
        python = find_python(python_preference)
        workspace.mkdir(parents=True, exist_ok=True)
        self.log_path = workspace / "backend.log"
        env = dict(os.environ)
        if PACKAGE_ROOT.name == "carrara" and (PACKAGE_ROOT / "backend").is_dir():
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT.parent), env.get("PYTHONPATH")]))
        command = [python, "-m", "carrara.backend", "serve", "--bind", address, "--workspace", str(workspace)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- started by Blender: {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        self._starts.append(time.monotonic())
        self.note = f"running (pid {self.process.pid}, log {self.log_path})"

    def check(self) -> str | None:
        """If the process died since the last check, forget it and say why (exit code and the log's tail)."""
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        self.process = None
        self.note = f"the local backend exited with code {code}: {self.log_tail()}"
        return self.note

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        with open(self.log_path, "rb") as handle:
            handle.seek(max(0, self.log_path.stat().st_size - LOG_TAIL_BYTES))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-4:]) or "(empty log)"

    def stop(self) -> None:
        """Ask the backend to finish cleanly (its job checkpoints and resumes next time); never kill it."""
        if not self.running:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            pass        # still checkpointing; it exits by itself
        self.process = None
        self.note = "stopped"
