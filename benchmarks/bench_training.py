"""Training throughput and peak GPU memory at each preset, against baselines run in the same command (issue 4, 7b).

    python3 benchmarks/bench_training.py                      # GPU machine: every preset on examples/chair (~5 min)
    python3 benchmarks/bench_training.py --dataset DIR --presets preview standard
    python3 benchmarks/bench_training.py --dataset benchmarks/data/fox --scene-type outdoor --presets standard \
        --skip-baselines                                       # a scene's step: background network, appearance
    python3 benchmarks/bench_training.py --smoke              # here, on the CPU: the ci preset, a few steps

Per preset, on the memory plan chosen for this GPU's free memory:
- ``ours``: ``Trainer.step()`` as the engine runs it (Triton encoding, occupancy-guided samples, bf16 colour MLPs,
  the SDF's softplus and head fused in Triton, the step captured as a CUDA graph):
  iterations/s, rays/s, rendered samples/s, SDF evaluations/s (rendered samples x 5 for the 4-tap gradient, plus
  the no-grad up-sampling scans), peak memory against the plan's estimate (its calibration), and the preset's
  expected duration (its iterations / the rate) against its target (preview ~60 s, standard ~600 s on an H100);
- baseline ``torch_encoding``: the same steps with the plain PyTorch hash-grid encoding (the reference) instead of
  the Triton kernel;
- baseline ``recipe_sampling``: the same steps with Neuralangelo's sample budget (64 stratified + 4 x 16 up-sampled,
  no occupancy grid: 129 rendered intervals per ray);
- baseline ``no_eikonal_ball``: the same steps without the eikonal points drawn in the unit ball (our departure
  from the recipe, ``LossWeights.eikonal_ball_points_per_ray``): what that loss term costs.
- engine baselines (issue 17, always run on a GPU, ``--steps`` steps each like ``ours``): ``baseline_no_cuda_graph``
  and ``baseline_unfused_head`` (one of the two off) and ``baseline_before_issue_17`` (both off: the engine as it
  was), the last with its own step breakdown (the others run the kernels of ``ours`` or of that one).
Every figure of a baseline is also given as ours / baseline.

``step_breakdown`` (per preset, also in ``--smoke``): where a step of ``ours`` spends its time, part by part
(ray batch, depth sampling, encoding, SDF and colour MLPs, numerical gradient, background, losses, optimizer),
forward and backward apart, from a torch profiler run over one occupancy-update period (``step_breakdown.py``
says how backward time is traced to its part; the profiled steps run uncaptured, as a graph's kernels cannot be
traced to their parts, so the breakdown is kernel time and its wall time is the eager one); the table is printed
too. ``--skip-baselines`` keeps ``ours``, its breakdown and the engine baselines.
Results: benchmarks/results/training_<gpu>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import _bootstrap

CONTEXT = _bootstrap.run_context()

import torch  # noqa: E402  (after the bootstrap, like the carrara imports)

import step_breakdown  # noqa: E402

from carrara.backend.data.dataset import dataset_sphere, load_dataset  # noqa: E402
from carrara.backend.render.renderer import SamplingConfig  # noqa: E402
from carrara.backend.jobs.reconstruct import new_run_settings  # noqa: E402
from carrara.backend.train.trainer import Trainer  # noqa: E402

TARGET_SECONDS = {"preview": 60.0, "standard": 600.0}
DEFAULT_DATASET = _bootstrap.REPO_ROOT / "examples" / "chair"
RECIPE_SAMPLING = SamplingConfig(n_uniform=0, n_guided=64, n_fine=16, fine_rounds=4, n_background=32)
ENGINE_BASELINES = {  # Trainer's engine options off, alone and together (issue 17's A/B)
    "baseline_no_cuda_graph": {"cuda_graph": False},
    "baseline_unfused_head": {"fused_sdf_head": False},
    "baseline_before_issue_17": {"cuda_graph": False, "fused_sdf_head": False},
}


def measure(trainer: Trainer, warmup: int, steps: int) -> dict[str, Any]:
    """Steps per second and peak memory of ``steps`` steps after ``warmup`` (iterations placed mid-schedule, where
    every hash level is active, so the figure is the steady state)."""
    device = trainer.device
    trainer.iteration = trainer.schedule.all_levels_at()
    if device.type == "cuda":   # before the warm-up, which holds the CUDA graph's capture (its memory pool)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        trainer.step()
    _bootstrap.cuda_sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    _bootstrap.cuda_sync(device)
    seconds = time.perf_counter() - start
    s = trainer.settings
    rate = steps / seconds
    rendered, scanned = s.sampling.rendered_per_ray, s.sampling.scanned_per_ray
    return {"steps": steps, "seconds": seconds, "it_per_s": rate, "rays_per_s": rate * s.rays_per_iter,
            "samples_per_s": rate * s.rays_per_iter * rendered,
            "sdf_evaluations_per_s": rate * s.rays_per_iter * (5 * rendered + scanned),
            "samples_per_ray": rendered, "peak_bytes": torch.cuda.max_memory_allocated(device)
            if device.type == "cuda" else None, "occupied_fraction": trainer.occupancy.fraction}


def ratios(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    keys = ("it_per_s", "rays_per_s", "sdf_evaluations_per_s", "peak_bytes")
    return {f"{k}_ours_over_baseline": ours[k] / base[k] for k in keys if ours.get(k) and base.get(k)}


def profile_breakdown(trainer: Trainer, steps: int, step_ms_unprofiled: float) -> dict[str, Any]:
    """Where the time of ``steps`` steps goes, per part (forward and backward apart), steps as ``measure`` runs,
    uncaptured (a CUDA graph's kernels carry no ranges)."""
    graph, trainer.graph = trainer.graph, None
    try:
        prof, seconds = step_breakdown.profile_steps(trainer.step, steps, trainer.device)
    finally:
        trainer.graph = graph
    return step_breakdown.breakdown(prof, steps, seconds, trainer.device, step_ms_unprofiled)


def bench_preset(name: str, dataset, device: torch.device, warmup: int, steps: int,
                 baseline_steps: int, profile_steps: int | None, with_baselines: bool) -> dict[str, Any]:
    settings, plan = new_run_settings(name, dataset, dataset.scene_type, device)
    result: dict[str, Any] = {"plan": plan.to_json() if plan else None, "iterations": settings.iterations,
                              "rays_per_iter": settings.rays_per_iter, "encoding": settings.model.sdf.encoding,
                              "hash_grid": {"log2_hashmap_size": settings.model.sdf.log2_hashmap_size,
                                            "features_per_level": settings.model.sdf.features_per_level}}
    trainer = Trainer(dataset, settings, device=device, image_budget=plan.image_cache_bytes if plan else 1 << 30)
    try:
        ours = measure(trainer, warmup, steps)
        ours["expected_duration_s"] = settings.iterations / ours["it_per_s"]
        if name in TARGET_SECONDS:
            ours["expected_duration_over_target"] = ours["expected_duration_s"] / TARGET_SECONDS[name]
        if plan is not None and ours["peak_bytes"]:
            ours["peak_over_plan_estimate"] = ours["peak_bytes"] / plan.estimated_bytes
        result["ours"] = ours
        # one occupancy-update period holds exactly one update, so its share is the run's
        result["step_breakdown"] = profile_breakdown(trainer, profile_steps or settings.occupancy_every,
                                                     1e3 / ours["it_per_s"])
        print(step_breakdown.table(name, result["step_breakdown"]), flush=True)
        if trainer.graph is not None:
            ours["graph_captures"] = trainer.graph.captures
            ours["graph_unavailable"] = trainer.graph.unavailable
        if device.type == "cuda" and with_baselines:
            encoding = trainer.model.sdf_field.encoding
            chosen, encoding.implementation = encoding.implementation, "torch"
            trainer.graph = None           # uncaptured, as before issue 17: this baseline is about the encoding
            result["baseline_torch_encoding"] = _baseline(trainer, ours, baseline_steps)
            encoding.implementation = chosen
    finally:
        trainer.close()
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    budget = plan.image_cache_bytes if plan else 1 << 30
    if device.type == "cuda":
        for label, engine in ENGINE_BASELINES.items():
            result[label] = _settings_baseline(dataset, settings, device, budget, ours, steps, engine=engine,
                                               breakdown=label == "baseline_before_issue_17", warmup=warmup)
    if not with_baselines:
        return result
    recipe = dataclasses.replace(settings, sampling=RECIPE_SAMPLING)
    result["baseline_recipe_sampling"] = _settings_baseline(dataset, recipe, device, budget, ours, baseline_steps,
                                                            occupancy=False)
    no_ball = dataclasses.replace(settings, losses=dataclasses.replace(settings.losses,
                                                                      eikonal_ball_points_per_ray=0.0))
    result["baseline_no_eikonal_ball"] = _settings_baseline(dataset, no_ball, device, budget, ours, baseline_steps)
    return result


def _settings_baseline(dataset, settings, device: torch.device, image_budget: int, ours: dict[str, Any],
                       steps: int, occupancy: bool = True, engine: dict[str, bool] | None = None,
                       breakdown: bool = False, warmup: int = 1) -> dict[str, Any]:
    """The same steps on a fresh trainer built from other settings or engine options (``Trainer``'s keywords),
    without the occupancy grid if asked, with its own step breakdown if asked."""
    trainer = Trainer(dataset, settings, device=device, image_budget=image_budget, **(engine or {}))
    if not occupancy:
        trainer.renderer.occupancy = None
    try:
        base = _baseline(trainer, ours, steps, warmup)
        if engine is not None:
            base["engine"] = engine
        if breakdown and "error" not in base:
            base["step_breakdown"] = profile_breakdown(trainer, settings.occupancy_every, 1e3 / base["it_per_s"])
        return base
    finally:
        trainer.close()
        del trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _baseline(trainer: Trainer, ours: dict[str, Any], steps: int, warmup: int = 1) -> dict[str, Any]:
    try:
        base = measure(trainer, warmup, steps)
    except torch.cuda.OutOfMemoryError as exc:
        return {"error": f"out of memory: {exc}".splitlines()[0]}
    base.update(ratios(ours, base))
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--scene-type", default="object", choices=("object", "indoor", "outdoor"),
                        help="a capture without masks (the fox) trains as a scene: background network and "
                             "appearance codes in every step")
    parser.add_argument("--presets", nargs="+", default=["preview", "standard", "high"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--baseline-steps", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=None,
                        help="steps profiled for the breakdown (default: the preset's occupancy-update period)")
    parser.add_argument("--skip-baselines", action="store_true", help="only ours and its step breakdown")
    parser.add_argument("--smoke", action="store_true", help="CPU, ci preset, a few steps: checks the script runs")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    presets = ["ci"] if args.smoke else args.presets
    steps, warmup, baseline_steps = (3, 1, 2) if args.smoke else (args.steps, args.warmup, args.baseline_steps)
    profile_steps = args.profile_steps or (2 if args.smoke else None)
    sphere = dataset_sphere(args.dataset, args.scene_type)
    dataset = load_dataset(args.dataset, sphere=sphere, scene_type=args.scene_type)
    results = {}
    for name in presets:
        print(f"{name}: ...", flush=True)
        results[name] = bench_preset(name, dataset, device, warmup, steps, baseline_steps, profile_steps,
                                     not args.skip_baselines)
        ours = results[name]["ours"]
        print(f"{name}: {ours['it_per_s']:.1f} it/s, {ours['rays_per_s'] / 1e3:.0f} k rays/s, "
              f"{ours['sdf_evaluations_per_s'] / 1e6:.1f} M SDF evaluations/s, expected run "
              f"{ours['expected_duration_s']:.0f} s", flush=True)
    payload = {**CONTEXT, "benchmark": "training", "dataset": str(args.dataset), "scene_type": args.scene_type,
               "photos": len(dataset.views),
               "device_used": str(device), "settings": {"steps": steps, "warmup": warmup,
                                                        "baseline_steps": baseline_steps,
                                                        "profile_steps": profile_steps,
                                                        "baselines": not args.skip_baselines},
               "presets": results}
    name = "training_" + (_bootstrap.gpu_slug(CONTEXT["device"]) if device.type == "cuda" else "cpu-smoke")
    if args.dataset.resolve() != DEFAULT_DATASET.resolve():   # another capture keeps the chair's figures
        name = name.replace("training_", f"training_{args.dataset.name}_", 1)
    for path in _bootstrap.write_results(name, payload):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
