"""The artist's loop as the add-on sees it, on the GPU (issue 5): seconds from pressing Reconstruct to the first
preview mesh on this side of the socket, and from the end of training to the final textured mesh.

    python3 benchmarks/bench_loop.py                   # GPU machine: the bundled chair, preview preset, 2048 final
    python3 benchmarks/bench_loop.py --smoke           # here, on the CPU: the ci preset, a coarse mesh

A real ``carrara-backend serve`` subprocess on loopback and the add-on's own client
(``addon/client/connection.py`` and ``addon/client/transfers.py``, which need no bpy): submit, follow the job's
events, download every mesh the way the pump does (chunked, SHA-256 checked). Blender's own part, putting a mesh into the scene, is measured on the CPU by the
tests and the import benchmark; the bpy wheel does not travel to the GPU machine.

Figures: time to the submit reply, to the first progress event, to the first preview mesh downloaded, to the end
of training (the "extracting" log line), to the final mesh event and to its download; each goal figure is also
stated as a ratio to its goal (first preview <= 20 s after Reconstruct; final 2048 textured mesh <= 20 s after
training). Results: benchmarks/results/loop_<gpu>.json.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import _bootstrap

CONTEXT = _bootstrap.run_context()

from carrara.addon.client.connection import Connection, ConnectionState  # noqa: E402  (after the bootstrap)
from carrara.addon.client.transfers import ArtifactDownload, TransferState  # noqa: E402
from carrara.shared import protocol as p  # noqa: E402
from carrara.shared.mesh_data import MeshData  # noqa: E402

GOAL_FIRST_PREVIEW_S = 20.0
GOAL_FINAL_AFTER_TRAINING_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _download(connection: Connection, job_id: str, ref: p.ArtifactRef, folder: Path, timeout_s: float,
              later: deque[tuple[float, p.Message]]) -> MeshData:
    """Fetch a mesh as the pump does; events that arrive meanwhile are kept in ``later`` with their arrival time."""
    download = ArtifactDownload(job_id, ref, folder / ref.name)
    deadline = time.monotonic() + timeout_s
    while download.state == TransferState.RUNNING and time.monotonic() < deadline:
        if connection.state not in (ConnectionState.CONNECTED, ConnectionState.CONNECTING):
            raise RuntimeError(f"the connection to the backend ended during a download: {connection.problem}")
        download.step(connection)
        now = time.monotonic()
        arrived = connection.poll(0.01)   # fetch replies go to the download's handlers
        later.extend((now, m) for m in arrived)
        if not arrived and download.state == TransferState.RUNNING:
            connection.wait(0.005)
    if download.state != TransferState.DONE:
        raise RuntimeError(f"download of {ref.name} failed: {download.error or 'timed out'}")
    return MeshData.read(download.destination)


def run_loop(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="carrara-loop-"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_bootstrap.carrara_import_folder()),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "carrara.backend", "serve", "--bind", address,
                               "--workspace", str(work / "workspace")], env=env)
    connection = Connection(address, client_name="bench_loop")
    times: dict[str, float] = {}
    meshes: list[dict[str, Any]] = []
    try:
        connection.open()
        connection.wait_connected(120)
        welcome = connection.welcome
        sphere = _estimated_sphere(args.dataset)
        config = {"dataset": {"path": str(args.dataset.resolve())}, "sphere_center": sphere[0],
                  "sphere_radius": sphere[1], "preset": args.preset, "preview_every_s": args.preview_every_s,
                  "preview_resolution": args.preview_resolution, "mesh_resolution": args.resolution,
                  "texture_size": args.texture_size, "decimate_faces": args.decimate_faces,
                  "export_formats": ["ply", "glb"]}
        pressed = time.monotonic()
        reply = connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": config}, timeout_s=30)
        job_id = reply.body["job"]["job_id"]
        connection.attach(job_id)
        times["submit_reply_s"] = time.monotonic() - pressed
        deadline = pressed + args.timeout
        final = None
        pending: deque[tuple[float, p.Message]] = deque()
        last_said = -10.0
        while final is None and time.monotonic() < deadline:
            polled = time.monotonic()
            pending.extend((polled, m) for m in connection.poll(0.01))
            if connection.state not in (ConnectionState.CONNECTED, ConnectionState.CONNECTING):
                raise RuntimeError(f"the connection to the backend ended: {connection.problem}")
            if not pending:
                connection.wait(0.05)
            while pending and final is None:
                received, message = pending.popleft()
                if message.type != p.MessageType.EVENT or message.job_id != job_id:
                    continue
                kind, now = message.body["event"], received - pressed
                if kind != p.EventKind.PROGRESS or now - last_said >= 5.0:
                    last_said = now
                    print(f"{now:7.2f} s  {kind}: { {k: v for k, v in message.body.items() if k != 'event'} }",
                          flush=True)
                if kind == p.EventKind.PROGRESS:
                    times.setdefault("first_progress_s", now)
                elif kind == p.EventKind.LOG and message.body["line"].startswith("extracting the final mesh"):
                    times["training_done_s"] = now
                elif kind == p.EventKind.STATE and message.body["state"] in ("failed", "cancelled"):
                    raise RuntimeError(f"the job ended {message.body['state']}: {message.body.get('reason')}")
                elif kind == p.EventKind.ERROR:
                    raise RuntimeError(f"the job failed: {message.body.get('message')}")
                elif kind in (p.EventKind.PREVIEW_MESH, p.EventKind.FINAL_MESH):
                    ref = p.ArtifactRef.from_json(message.body["artifact"])
                    if kind == p.EventKind.FINAL_MESH:
                        times["final_mesh_event_s"] = now
                    mesh = _download(connection, job_id, ref, work / "downloads", 120, pending)
                    arrived = time.monotonic() - pressed
                    meshes.append({"kind": kind, "iteration": ref.iteration, "arrived_s": arrived,
                                   "bytes": ref.size, "vertices": mesh.vertex_count, "faces": mesh.face_count,
                                   "textured": mesh.texture_png is not None})
                    if kind == p.EventKind.PREVIEW_MESH:
                        times.setdefault("first_preview_downloaded_s", arrived)
                    else:
                        times["final_mesh_downloaded_s"] = arrived
                        final = mesh
        if final is None:
            raise RuntimeError(f"no final mesh within {args.timeout} s")
    finally:
        connection.close()
        server.terminate()
        server.wait(60)
        for log in (work / "workspace" / "jobs").glob("*/log.txt"):
            print(f"--- the job's log ({log}):\n{log.read_text()}", flush=True)
    result: dict[str, Any] = {"dataset": str(args.dataset), "preset": args.preset, "backend": welcome.get(
        "capabilities"), "settings": {k: config[k] for k in config if k != "dataset"}, "times": times,
        "meshes": meshes}
    if "first_preview_downloaded_s" in times:
        result["first_preview_over_goal"] = times["first_preview_downloaded_s"] / GOAL_FIRST_PREVIEW_S
    if "training_done_s" in times:
        after = times["final_mesh_downloaded_s"] - times["training_done_s"]
        result["final_after_training_s"] = after
        result["final_after_training_over_goal"] = after / GOAL_FINAL_AFTER_TRAINING_S
    return result


def _estimated_sphere(dataset: Path) -> tuple[list[float], float]:
    """The sphere the add-on would estimate on import (the same shared rule the backend's CLI uses)."""
    from carrara.backend.data.dataset import dataset_sphere

    sphere = dataset_sphere(dataset, "object")
    return [float(v) for v in sphere.center], float(sphere.radius)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=_bootstrap.REPO_ROOT / "examples" / "chair")
    parser.add_argument("--preset", default="preview")
    parser.add_argument("--preview-every-s", type=float, default=5.0)
    parser.add_argument("--preview-resolution", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=2048, help="the final mesh's resolution")
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--decimate-faces", type=int, default=500_000)
    parser.add_argument("--timeout", type=float, default=500.0)
    parser.add_argument("--smoke", action="store_true", help="CPU, the ci preset, a coarse mesh")
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.preview_every_s, args.resolution, args.texture_size = "ci", 2.0, 64, 64
        args.decimate_faces, args.preview_resolution = 0, 32
    payload = {**CONTEXT, "benchmark": "loop", **run_loop(args)}
    gpu = payload["device"].get("gpu")
    name = "loop_" + (_bootstrap.gpu_slug(payload["device"]) if gpu and not args.smoke else "cpu-smoke")
    for key, value in payload["times"].items():
        print(f"{key}: {value:.2f}")
    for path in _bootstrap.write_results(name, payload):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
