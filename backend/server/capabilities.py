"""What this backend can do, as the add-on shows it: GPU, memory, torch and CUDA versions, tinycudann, device,
and the devices the server runs jobs on (one job per GPU at a time; a reconstruction's ``gpus`` pools several, at
most all of them).

torch is imported here, inside ``detect``, and nowhere at module level, so ``carrara-backend keys`` and the
server's start stay light; the server probes on a thread while it already answers pings.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any


def backend_version() -> str:
    try:
        return importlib.metadata.version("carrara")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def detect() -> dict[str, Any]:
    """Probe the hardware and libraries; never raises (a missing library is reported, not fatal)."""
    caps: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(terse=True),
                            "torch": None, "cuda": None, "cuda_available": False, "gpu_name": None,
                            "gpu_memory_bytes": None, "gpu_count": 0, "tinycudann": False, "triton": False}
    try:
        import torch
    except ImportError as exc:
        caps["torch_error"] = f"torch does not import: {exc}"
        return caps
    caps["torch"] = torch.__version__
    caps["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        caps.update(cuda_available=True, gpu_name=props.name, gpu_memory_bytes=int(props.total_memory),
                    gpu_count=torch.cuda.device_count())
    for module in ("tinycudann", "triton"):
        try:
            importlib.import_module(module)
            caps[module] = True
        except Exception:     # an extension built for another CUDA raises more than ImportError
            caps[module] = False
    return caps


def choose_device(requested: str, caps: dict[str, Any]) -> str:
    """'auto' takes the GPU when there is one; asking for 'cuda' without one is an error worth stopping for."""
    if requested == "cuda" and not caps["cuda_available"]:
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA GPU "
                           f"(torch {caps['torch']}, CUDA {caps['cuda']}); use --device auto or cpu")
    if requested == "auto":
        return "cuda" if caps["cuda_available"] else "cpu"
    return requested


#: A comma-separated device list that replaces the probed one, e.g. "cpu,cpu" (tests: two workers without GPUs) or
#: "cuda:0,cuda:0" (two jobs sharing one large GPU).
JOB_DEVICES_ENV = "CARRARA_JOB_DEVICES"


def job_devices(caps: dict[str, Any]) -> list[str]:
    """The devices the server runs jobs on, one job each at a time: every GPU torch sees, else the one device."""
    override = [d.strip() for d in os.environ.get(JOB_DEVICES_ENV, "").split(",") if d.strip()]
    for device in override:
        if device != "cpu" and not (device.startswith("cuda:") and device[5:].isdigit()
                                    and int(device[5:]) < caps["gpu_count"]):
            raise RuntimeError(f"{JOB_DEVICES_ENV}={os.environ[JOB_DEVICES_ENV]!r}: {device!r} is not 'cpu' or "
                               f"'cuda:N' of the {caps['gpu_count']} GPUs torch sees")
    if override:
        return override
    if caps["device"] == "cuda":
        return [f"cuda:{index}" for index in range(caps["gpu_count"])]
    return [caps["device"]]
