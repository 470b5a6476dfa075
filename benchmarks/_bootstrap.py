"""Shared set-up for benchmark scripts: import ``carrara`` from this checkout, and say where and on what code we ran.

The repository root is the package ``carrara`` (pyproject maps it), but the GPU machine has nothing installed. So
``ensure_carrara_importable`` puts a temporary folder holding only a symlink ``carrara`` -> root first on sys.path
(also when another checkout's ``carrara`` is installed: we measure this one). Run as a script it prints such a
folder, for shell scripts: ``export PYTHONPATH="$(python3 benchmarks/_bootstrap.py)${PYTHONPATH:+:$PYTHONPATH}"``.

Results go to benchmarks/results/ (``$CARRARA_RESULTS_DIR`` instead when set) and, when the device tool's ``$OUT``
is set, also there (it is what comes back).
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# CARRARA_RESULTS_DIR: where the smoke tests send their results, so that a test run leaves the checkout as it was
RESULTS_DIR = Path(os.environ.get("CARRARA_RESULTS_DIR") or REPO_ROOT / "benchmarks" / "results")


def carrara_import_folder() -> Path:
    """A new temporary folder holding only a symlink ``carrara`` -> this checkout, to put on the import path."""
    folder = Path(tempfile.mkdtemp(prefix="carrara-import-"))
    (folder / "carrara").symlink_to(REPO_ROOT, target_is_directory=True)
    return folder


def ensure_carrara_importable() -> None:
    """Make ``import carrara`` load this checkout (not an installed copy of another one)."""
    spec = importlib.util.find_spec("carrara")
    if spec is not None and spec.origin and Path(spec.origin).resolve().parent == REPO_ROOT:
        return
    sys.path.insert(0, str(carrara_import_folder()))
    for name in [name for name in sys.modules if name == "carrara" or name.startswith("carrara.")]:
        del sys.modules[name]   # a copy imported earlier must not shadow this checkout


def git_commit() -> str:
    """$CARRARA_GIT_COMMIT when set, else HEAD of this checkout (with '+dirty' for uncommitted changes).

    The variable wins because the GPU machine's copy of the tree carries the last landed HEAD with later commits
    as uncommitted changes, so git there names the wrong commit (seen: results saying 6d1942f+dirty)."""
    if os.environ.get("CARRARA_GIT_COMMIT"):
        return os.environ["CARRARA_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git here; set CARRARA_GIT_COMMIT)"


def device_description() -> dict[str, Any]:
    """The GPU and the software stack the figures were measured with."""
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "gpu": None}
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, sm_count=props.multi_processor_count,
                    memory_bytes=int(props.total_memory), compute_capability=f"{props.major}.{props.minor}",
                    l2_cache_bytes=int(getattr(props, "L2_cache_size", 0)) or None)
    return info


def cuda_sync(device: Any) -> None:
    """Wait for the GPU's queued work before reading a clock (nothing to wait for on the CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def gpu_slug(device: dict[str, Any]) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3', for result file names."""
    return re.sub(r"[^a-z0-9]+", "-", (device.get("gpu") or "cpu").lower()).strip("-")


def run_context() -> dict[str, Any]:
    """Make ``carrara`` importable, and return what every result file states: code, device, command, time."""
    ensure_carrara_importable()
    return {"repo_root": str(REPO_ROOT), "git_commit": git_commit(), "device": device_description(),
            "argv": sys.argv[1:], "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_results(name: str, payload: dict[str, Any]) -> list[Path]:
    """Write ``<name>.json`` under benchmarks/results/ and under $OUT when set; returns the paths written."""
    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    targets = [RESULTS_DIR / f"{name}.json"]
    if os.environ.get("OUT"):
        targets.append(Path(os.environ["OUT"]) / f"{name}.json")
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return targets


if __name__ == "__main__":
    print(carrara_import_folder())
