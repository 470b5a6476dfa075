"""Several GPUs of one host (issue 16): training throughput on 1, 2 and 4 GPUs at equal iterations, with the Chamfer
of each run, and two server jobs on a 2-GPU host each against the one-job rate.

    python3 benchmarks/bench_multigpu.py --truth benchmarks/data/bunny/bunny_meta.json --part training   # 1, 2, 4
    python3 benchmarks/bench_multigpu.py --part jobs                                          # needs 2 GPUs
    python3 benchmarks/bench_multigpu.py --smoke --dataset SCENE   # CPU ranks over gloo, seconds

Training: ``carrara-backend train --gpus N`` as a person runs it (torchrun, one process per GPU, each rank drawing
its share of the preset's rays), ``--iters`` iterations at ``--preset`` for every N; the rate is the CLI's own
(iterations over training time, rank 0's clock), and the mesh of each run's last checkpoint is measured against the
bunny's true surface (chamfer.py) at ``--resolution``. Goals: 2 GPUs >= 1.8x and 4 GPUs >= 3.4x one GPU's rate,
Chamfer within 10 % of one GPU's. GPU counts above what torch sees are skipped (and said so).

Jobs: a real ``carrara-backend serve`` on loopback (one worker per GPU), one reconstruct job alone, then two at once,
then one job with ``gpus`` 2 (a pool of both GPUs, its ranks under torchrun); each job's rate is its last progress
event's (iterations over training time). Goals: each of the two >= 90 % of the one-job rate; the 2-GPU job's
speed-up over the one-job rate is recorded beside the CLI's (goal 1.8x). Results: benchmarks/results/multigpu_<gpu>.json (each part updates its own section).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _bootstrap

CONTEXT = _bootstrap.run_context()

import torch  # noqa: E402  (after the bootstrap, like the carrara imports)

from carrara.addon.client.connection import Connection  # noqa: E402
from carrara.backend.data.dataset import dataset_sphere  # noqa: E402
from carrara.backend.mesh.export import write_ply  # noqa: E402
from carrara.backend.mesh.pipeline import build_mesh  # noqa: E402
from carrara.backend.jobs.extract import load_trained_model  # noqa: E402
from carrara.shared import protocol as p  # noqa: E402
from chamfer import chamfer_against_meta  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

GOAL_SPEEDUP = {2: 1.8, 4: 3.4}
GOAL_CHAMFER_SPREAD = 0.10
GOAL_TWO_JOBS_SHARE = 0.90
_RATE = re.compile(r"(\d+)/(\d+)\s.*?([\d.]+) it/s")


def _env() -> dict[str, str]:
    """This checkout importable as ``carrara`` in the processes the benchmark starts (torchrun's ranks too)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(_bootstrap.carrara_import_folder()),
                                                        os.environ.get("PYTHONPATH", "")]))


def train_once(args: argparse.Namespace, gpus: int, work: Path) -> dict[str, Any]:
    """One ``carrara-backend train --gpus N`` run: its rate, wall time and (with --truth) the Chamfer of its mesh."""
    run = work / f"gpus{gpus}"
    command = [sys.executable, "-m", "carrara.backend", "train", str(args.dataset), "--out", str(run), "--preset",
               args.preset, "--iters", str(args.iters), "--gpus", str(gpus), "--device", args.device]
    started = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"train --gpus {gpus} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    finals = [m for m in _RATE.finditer(done.stderr) if m.group(1) == m.group(2)]
    if not finals:
        raise RuntimeError(f"train --gpus {gpus}: no final progress line in its output:\n{done.stderr[-2000:]}")
    entry: dict[str, Any] = {"gpus": gpus, "it_per_s": float(finals[-1].group(3)), "wall_s": wall,
                             "iterations": args.iters}
    device = "cuda" if args.device != "cpu" else "cpu"
    model, normalization, iteration = load_trained_model(run, device)
    mesh = build_mesh(model.sdf_fn(), None, args.resolution, device=device,
                      to_world=normalization.to_world_affine, vertex_colors=False,
                      remove_cavities=not model.config.sdf.inside_out)
    entry.update(checkpoint_iteration=iteration, faces=mesh.face_count)
    if args.truth is not None and mesh.face_count:
        write_ply(mesh, run / "measured.ply")
        entry["chamfer"] = chamfer_against_meta(run / "measured.ply", args.truth)["chamfer"]
    print(f"--gpus {gpus}: {entry['it_per_s']:.2f} it/s, {wall:.0f} s in all"
          + (f", chamfer {entry['chamfer'] * 100:.3f} % of r" if "chamfer" in entry else ""), flush=True)
    return entry


def training_part(args: argparse.Namespace, work: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Runs for ``--gpus``, merged with the earlier command's runs of other counts at the same settings (so 1 and 2
    GPUs, then 4, fit two commands), each compared with the one-GPU run."""
    visible = torch.cuda.device_count() if args.device != "cpu" else max(args.gpus)
    fresh = [train_once(args, n, work) for n in args.gpus if n <= visible]
    skipped = [n for n in args.gpus if n > visible]
    if skipped:
        print(f"skipped --gpus {skipped}: torch sees {visible} GPUs", flush=True)
    same = previous is not None and (previous["preset"], previous["iterations"], previous["dataset"]) == (
        args.preset, args.iters, str(args.dataset))
    kept = [r for r in previous["runs"] if r["gpus"] not in {f["gpus"] for f in fresh}] if same else []
    runs = sorted(kept + fresh, key=lambda r: r["gpus"])
    one = next((r for r in runs if r["gpus"] == 1), None)
    for run in runs:
        if one is None or run is one:
            continue
        run["speedup_over_one"] = run["it_per_s"] / one["it_per_s"]
        if run["gpus"] in GOAL_SPEEDUP:
            run["speedup_over_goal"] = run["speedup_over_one"] / GOAL_SPEEDUP[run["gpus"]]
        if "chamfer" in run and "chamfer" in one:
            run["chamfer_over_one"] = run["chamfer"] / one["chamfer"]
            run["chamfer_within_goal"] = abs(run["chamfer_over_one"] - 1.0) <= GOAL_CHAMFER_SPREAD
    return {"dataset": str(args.dataset), "preset": args.preset, "iterations": args.iters,
            "mesh_resolution": args.resolution, "runs": runs, "skipped_gpus": skipped}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _job_config(args: argparse.Namespace) -> dict[str, Any]:
    sphere = dataset_sphere(args.dataset, "object")
    return {"dataset": {"path": str(args.dataset.resolve())}, "sphere_center": [float(v) for v in sphere.center],
            "sphere_radius": float(sphere.radius), "preset": args.preset, "iterations": args.iters,
            "device": args.device, "preview_every_s": 0, "mesh_resolution": 64, "texture": False,
            "decimate_faces": 0, "export_formats": []}


def _run_jobs(connection: Connection, config: dict[str, Any], count: int, timeout_s: float) -> list[dict[str, Any]]:
    """Submit ``count`` jobs at once and follow them to the end: each one's last training rate and device."""
    jobs = [connection.call(p.MessageType.SUBMIT, {"kind": "reconstruct", "config": config}, timeout_s=30).job_id
            for _ in range(count)]
    rates: dict[str, float] = {}
    ended: dict[str, str] = {}
    for job_id in jobs:
        connection.attach(job_id)
    deadline = time.monotonic() + timeout_s
    while len(ended) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs {jobs} did not end within {timeout_s} s")
        for message in connection.poll(0.05):
            if message.type != p.MessageType.EVENT or message.job_id not in jobs:
                continue
            body = message.body
            if body["event"] == "progress" and body.get("phase") == "train" and body.get("rate"):
                rates[message.job_id] = float(body["rate"])
            elif body["event"] == "state" and body["state"] in ("finished", "failed", "cancelled"):
                ended[message.job_id] = body["state"]
    failed = {j: s for j, s in ended.items() if s != "finished"}
    if failed:
        raise RuntimeError(f"jobs ended without finishing: {failed}")
    listed = {j["job_id"]: j for j in connection.call(p.MessageType.LIST_JOBS, timeout_s=30).body["jobs"]}
    return [{"job_id": j, "it_per_s": rates[j], "device": listed[j].get("device"), "devices": listed[j].get("devices")}
            for j in jobs]


def jobs_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = _env()
    if args.smoke:
        env["CARRARA_JOB_DEVICES"] = "cpu,cpu"
    elif torch.cuda.device_count() < 2:
        raise SystemExit("--part jobs needs a host with 2 GPUs")
    address = f"tcp://127.0.0.1:{_free_port()}"
    server = subprocess.Popen([sys.executable, "-m", "carrara.backend", "serve", "--bind", address, "--workspace",
                               str(work / "workspace")], env=env)
    connection = Connection(address, client_name="bench_multigpu")
    try:
        connection.open()
        connection.wait_connected(120)
        devices = connection.welcome["capabilities"]["job_devices"]
        config = _job_config(args)
        alone = _run_jobs(connection, config, 1, args.timeout)[0]
        print(f"one job alone: {alone['it_per_s']:.2f} it/s on {alone['device']}", flush=True)
        pair = _run_jobs(connection, config, 2, args.timeout)
        for job in pair:
            job["share_of_one_job_rate"] = job["it_per_s"] / alone["it_per_s"]
            print(f"two at once: {job['it_per_s']:.2f} it/s on {job['device']} "
                  f"({job['share_of_one_job_rate']:.0%} of the one-job rate)", flush=True)
        pool = _run_jobs(connection, {**config, "gpus": 2}, 1, args.timeout)[0]
        pool["speedup_over_one_job"] = pool["it_per_s"] / alone["it_per_s"]
        print(f"one job on 2 GPUs: {pool['it_per_s']:.2f} it/s on {', '.join(pool['devices'])} "
              f"({pool['speedup_over_one_job']:.2f}x the one-job rate)", flush=True)
    finally:
        connection.close()
        server.terminate()
        server.wait(60)
    return {"job_devices": devices, "preset": args.preset, "iterations": args.iters, "one_job": alone,
            "two_jobs": pair, "goal_share": GOAL_TWO_JOBS_SHARE, "two_gpu_job": pool,
            "met": all(j["share_of_one_job_rate"] >= GOAL_TWO_JOBS_SHARE for j in pair)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=_bootstrap.REPO_ROOT / "benchmarks" / "data" / "bunny")
    parser.add_argument("--truth", type=Path, default=None, help="bunny_meta.json of render_bunny.py: Chamfer")
    parser.add_argument("--part", choices=("training", "jobs", "both"), default="both")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4], help="GPU counts to train on")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--iters", type=int, default=2000, help="iterations of every run (equal for all)")
    parser.add_argument("--resolution", type=int, default=512, help="marching-cubes cells for the Chamfer mesh")
    parser.add_argument("--timeout", type=float, default=560.0, help="seconds one run or job pair may take")
    parser.add_argument("--smoke", action="store_true", help="CPU ranks over gloo, the ci preset: checks the script")
    args = parser.parse_args()
    args.device = "cpu" if args.smoke else "cuda"
    if args.smoke:
        args.preset, args.iters, args.gpus, args.resolution = "ci", 4, [1, 2], 32
    elif not torch.cuda.is_available():
        raise SystemExit("bench_multigpu.py needs CUDA GPUs (use --smoke to check the script on the CPU)")
    name = "multigpu_" + (_bootstrap.gpu_slug(CONTEXT["device"]) if not args.smoke else "cpu-smoke")
    previous = _bootstrap.RESULTS_DIR / f"{name}.json"
    payload = json.loads(previous.read_text()) if previous.is_file() else {}
    payload.update({**CONTEXT, "benchmark": "multigpu"})
    work = Path(tempfile.mkdtemp(prefix="carrara-multigpu-"))
    if args.part in ("training", "both"):
        payload["training"] = training_part(args, work, payload.get("training"))
    if args.part in ("jobs", "both"):
        payload["jobs"] = jobs_part(args, work)
    for path in _bootstrap.write_results(name, payload):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
