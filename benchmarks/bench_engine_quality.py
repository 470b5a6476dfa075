"""Quality per iteration of the engine's fast paths (issue 17): the same run, the same iterations, with the step
captured as a CUDA graph and the SDF's softplus and head fused (``ours``) and without them (the engine before),
so a speed-up is shown not to cost surface quality.

    python3 benchmarks/bench_engine_quality.py --runs preview:2000 standard:3000      # GPU, the bunny (~8 min)
    python3 benchmarks/bench_engine_quality.py --smoke --dataset SCENE   # CPU, seconds; SCENE: tests/engine_scenes.py

Per run (preset:iterations; the schedule is laid over those iterations), each engine trains from the same seed,
then held-out PSNR and, with ``--truth``, Chamfer (``bench_quality.evaluate``). Figures: training seconds and
it/s of each, and ours / baseline for Chamfer (goal: within +-10 %), PSNR difference and speed. One seed each: the
Triton backward's atomics make two runs of one engine differ too, which ``--repeats 2`` measures.
Results: benchmarks/results/engine_quality_<name>_<gpu>.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _bootstrap

CONTEXT = _bootstrap.run_context()

import torch  # noqa: E402  (after the bootstrap, like the carrara imports)

from bench_quality import _sphere, evaluate  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from bench_training import ENGINE_BASELINES  # noqa: E402
from carrara.backend.data.dataset import load_dataset  # noqa: E402
from carrara.backend.jobs.reconstruct import new_run_settings  # noqa: E402
from carrara.backend.train.trainer import Trainer  # noqa: E402

# ours: Trainer's defaults, the engine as it runs; the baseline: the one bench_training.py also times
ENGINES = {"ours": {}, "baseline_before_issue_17": ENGINE_BASELINES["baseline_before_issue_17"]}
CHAMFER_TOLERANCE = 0.10


def train_and_measure(dataset, preset: str, iterations: int, engine: dict[str, bool], device: torch.device,
                      resolution: int, truth: Path | None, seed: int) -> dict[str, Any]:
    settings, plan = new_run_settings(preset, dataset, "object", device, iterations)
    trainer = Trainer(dataset, settings, device=device, image_budget=plan.image_cache_bytes if plan else 1 << 30,
                      seed=seed, **engine)
    work = Path(tempfile.mkdtemp(prefix="carrara-engine-quality-"))
    try:
        _bootstrap.cuda_sync(device)
        start = time.perf_counter()
        while trainer.iteration < settings.iterations:
            trainer.step()
        _bootstrap.cuda_sync(device)
        seconds = time.perf_counter() - start
        entry = evaluate(trainer, resolution, truth, work)
    finally:
        trainer.close()
    return {"engine": engine, "seed": seed, "training_seconds": seconds, "it_per_s": iterations / seconds, **entry}


def compare(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {"it_per_s_ours_over_baseline": ours["it_per_s"] / base["it_per_s"],
                               "psnr_ours_minus_baseline_db": ours["psnr_held_out"] - base["psnr_held_out"]}
    if "chamfer" in ours and "chamfer" in base:
        ratio = ours["chamfer"] / base["chamfer"]
        figures.update({"chamfer_ours_over_baseline": ratio,
                        "chamfer_within_tolerance": abs(ratio - 1.0) <= CHAMFER_TOLERANCE})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=_bootstrap.REPO_ROOT / "benchmarks" / "data" / "bunny")
    parser.add_argument("--truth", type=Path, default=None,
                        help="bunny_meta.json of render_bunny.py (default: the dataset's own, where it has one)")
    parser.add_argument("--name", default="bunny")
    parser.add_argument("--runs", nargs="+", default=["preview:2000", "standard:3000"], help="preset:iterations")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="seeds per engine")
    parser.add_argument("--smoke", action="store_true", help="CPU, the ci preset, seconds: checks the script runs")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        args.runs, args.resolution = ["ci:20"], 48
    elif device.type != "cuda":
        raise SystemExit("bench_engine_quality.py needs a CUDA GPU (use --smoke to check the script on the CPU)")
    truth_path = args.truth or (args.dataset / "bunny_meta.json")
    truth_path = truth_path if truth_path.is_file() else None
    truth = json.loads(truth_path.read_text()) if truth_path else None
    dataset = load_dataset(args.dataset, sphere=_sphere(args.dataset, truth, "object"), scene_type="object")
    runs: dict[str, Any] = {}
    for spec in args.runs:
        preset, iterations = spec.split(":")
        results = {label: [train_and_measure(dataset, preset, int(iterations), engine, device, args.resolution,
                                             truth_path, seed) for seed in range(args.repeats)]
                   for label, engine in ENGINES.items()}
        runs[spec] = {**results, "ours_over_baseline": [compare(o, b) for o, b in
                                                        zip(results["ours"], results["baseline_before_issue_17"])]}
        for ratio in runs[spec]["ours_over_baseline"]:
            print(f"{spec}: ours/baseline {ratio}", flush=True)
    payload = {**CONTEXT, "benchmark": "engine_quality", "name": args.name, "dataset": str(args.dataset),
               "truth": str(truth_path) if truth_path else None, "photos": len(dataset.views),
               "chamfer_tolerance": CHAMFER_TOLERANCE, "runs": runs}
    name = f"engine_quality_{args.name}_" + (_bootstrap.gpu_slug(CONTEXT["device"]) if device.type == "cuda"
                                             else "cpu-smoke")
    for path in _bootstrap.write_results(name, payload):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
