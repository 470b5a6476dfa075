"""Quality against time on real data with ground truth (issue 4, 7c and 7d): held-out PSNR and, where a true mesh
exists, Chamfer distance, after 1, 2, 5 ... minutes of training on the GPU.

    python3 benchmarks/bench_quality.py --dataset benchmarks/data/bunny --truth benchmarks/data/bunny/bunny_meta.json
    python3 benchmarks/bench_quality.py --dataset ../shared/data/instant_ngp_fox --name fox --minutes 1 2
    python3 benchmarks/bench_quality.py --smoke --dataset SCENE  # CPU, seconds; SCENE: tests/engine_scenes.py SCENE

One run per dataset, with the engine's own trainer and memory plan. Its iteration count is chosen so the schedule
(coarse-to-fine, learning-rate decay) ends at the last time budget: a short calibration measures this GPU's rate
first. At each budget the clock stops, a mesh is extracted at ``--resolution`` (no colours) and measured, and the
clock runs on: the times are training time, the extraction time is reported apart.

A run longer than one command may last (the GPU machine's limit is 10 minutes; the 10-minute point needs about
12) is split: ``--wall-limit-s`` stops training before the command's time is up, writes the trainer's checkpoint
and the figures so far to ``--state``, and a second command with the same ``--state`` (its other options are taken
from there) goes on where the first stopped; the training clock counts only training in both.

Figures per budget: held-out PSNR (the dataset's evenly spaced held-out photos) and the training photos' PSNR
(each with its own appearance code: far above the held-out one, the model fits its photos but not new views;
both low, it has not fit them yet); with ``--truth`` (render_bunny.py's
bunny_meta.json) accuracy, completeness and Chamfer as fractions of the sphere radius (chamfer.py). Baselines of the
same command: the untrained model (geometric initialisation, iteration 0), and for Chamfer the goal of 0.2 % of the
radius within 5 minutes. With ``--smoothness``, each budget's mesh also gets surface_smoothness.py's figure: normal
variation on a flat patch of the dataset's dominant plane (a wall), to measure colour kept out of the geometry.
Results: benchmarks/results/quality_<name>_<gpu>.json.

``--set FIELD=VALUE`` (repeatable) changes one field of the preset for a run, dotted into its groups
(``losses.curvature=1e-3``, ``grid_in_feature=false``, ``schedule.anneal_end=0.2``): the A/B of a recipe choice,
such as the regularisation of issue 17 item 4, is the same command once with and once without it.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402  (after the bootstrap, like the carrara imports)

from carrara.backend.data.dataset import dataset_sphere, load_dataset  # noqa: E402
from carrara.backend.mesh.export import write_ply  # noqa: E402
from carrara.backend.mesh.pipeline import build_mesh  # noqa: E402
from carrara.backend.mesh.simplify import reduce_to_budget  # noqa: E402
from carrara.backend.jobs.reconstruct import new_run_settings  # noqa: E402
from carrara.backend.train.checkpoint import (list_checkpoints, load_latest, save_checkpoint,  # noqa: E402
                                              write_json_atomic)
from carrara.backend.train.trainer import Trainer  # noqa: E402
from carrara.shared.mesh_data import MeshData  # noqa: E402
from carrara.shared.sphere import BoundingSphere  # noqa: E402
from chamfer import chamfer_against_meta  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from surface_smoothness import dataset_points, mesh_smoothness, summary  # noqa: E402

CHAMFER_GOAL = 0.002            # of the radius, within GOAL_MINUTES on one H100 (issue 4)
GOAL_MINUTES = 5.0
CALIBRATION_STEPS = 40
KEPT_FACES = 300_000
SAVE_RESERVE_S = 60.0           # of --wall-limit-s kept for writing the state (a few GB of parameters and moments)


def _sphere(dataset_path: Path, truth: dict[str, Any] | None, scene_type: str) -> BoundingSphere:
    if truth is not None:
        return BoundingSphere(truth["sphere"]["center"], truth["sphere"]["radius"])
    return dataset_sphere(dataset_path, scene_type)


def calibrate(dataset, settings, plan, device: torch.device, steps: int) -> float:
    """Iterations per second of this preset on this GPU, mid-schedule (every level active)."""
    trainer = Trainer(dataset, settings, device=device, image_budget=plan.image_cache_bytes if plan else 1 << 30)
    try:
        trainer.iteration = trainer.schedule.all_levels_at()
        for _ in range(5):
            trainer.step()
        _bootstrap.cuda_sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        _bootstrap.cuda_sync(device)
        return steps / (time.perf_counter() - start)
    finally:
        trainer.close()


def evaluate(trainer: Trainer, resolution: int, truth_path: Path | None, work: Path,
             keep: Path | None = None, smoothness_points: np.ndarray | None = None) -> dict[str, Any]:
    """Held-out PSNR and (with a true mesh) Chamfer of the model as it is now; the time it took is apart.
    ``keep``: a folder for a decimated copy of the mesh (KEPT_FACES), to look at where its errors lie.
    ``smoothness_points``: when given, the mesh's flat-patch smoothness, on the plane of these points (empty: of
    the mesh's own vertices)."""
    started = time.perf_counter()
    psnr, psnr_training = trainer.validate(), trainer.training_view_psnr()
    trainer.prepare_for_extraction()
    mesh = build_mesh(trainer.model.sdf_fn(), None, resolution, device=trainer.device,
                      to_world=trainer.dataset.normalization.to_world_affine, vertex_colors=False,
                      remove_cavities=not trainer.model.config.sdf.inside_out)   # as the delivered asset
    entry: dict[str, Any] = {"iteration": trainer.iteration, "psnr_held_out": psnr,
                             "psnr_training_views": psnr_training, "faces": mesh.face_count}
    if truth_path is not None and mesh.face_count:
        path = work / f"mesh_{trainer.iteration:07d}.ply"
        write_ply(mesh, path)
        measured = chamfer_against_meta(path, truth_path)
        entry.update({k: measured[k] for k in ("accuracy", "completeness", "chamfer", "accuracy_median",
                                               "completeness_median", "ignored_pred_fraction",
                                               "ignored_gt_fraction")})
    if smoothness_points is not None and mesh.face_count:
        entry["smoothness"] = mesh_smoothness(mesh.vertices, mesh.faces, smoothness_points)
    entry["evaluation_seconds"] = time.perf_counter() - started
    if keep is not None and mesh.face_count:
        vertices, faces = reduce_to_budget(torch.from_numpy(mesh.vertices).to(trainer.device),
                                           torch.from_numpy(mesh.faces).long().to(trainer.device), KEPT_FACES)
        keep.mkdir(parents=True, exist_ok=True)
        write_ply(MeshData(vertices.cpu().numpy(), faces.cpu().numpy().astype(np.int32)),
                  keep / f"mesh_{trainer.iteration:07d}.ply")
    return entry


# The options a continued run takes from its state, so both halves measure one and the same run.
RUN_OPTIONS = ("dataset", "truth", "name", "minutes", "preset", "scene_type", "resolution", "keep_meshes",
               "eikonal_ball_points", "smoothness", "set")


def preset_changes(args: argparse.Namespace) -> dict[str, str]:
    """``--set`` as field -> text, with ``--eikonal-ball-points`` (the older spelling of one such change)."""
    changes = {}
    for item in args.set or []:
        field, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: write FIELD=VALUE, e.g. losses.curvature=1e-3")
        changes[field.strip()] = value.strip()
    if args.eikonal_ball_points is not None:
        changes["losses.eikonal_ball_points_per_ray"] = str(args.eikonal_ball_points)
    return changes


def _restore_options(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    for key in RUN_OPTIONS:
        if key not in saved["options"]:     # a state written before the option existed
            continue
        value = saved["options"][key]
        setattr(args, key, Path(value) if key in ("dataset", "truth", "keep_meshes") and value else value)


def _save_state(state_dir: Path, trainer: Trainer, progress: dict[str, Any]) -> None:
    """The trainer's checkpoint, then the figures: a state without its checkpoint is never left behind."""
    save_checkpoint(trainer.checkpoint_state(), state_dir, trainer.iteration, keep=1)
    write_json_atomic(state_dir / "progress.json", {**progress, "iteration": trainer.iteration})


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any] | None:
    """The figures of the whole run, or None when the command's time ran out first and the state was saved."""
    begun = time.perf_counter()
    progress_path = args.state / "progress.json" if args.state else None
    saved = json.loads(progress_path.read_text()) if progress_path and progress_path.is_file() else None
    commands = saved["commands"] + 1 if saved else 1
    if saved:
        _restore_options(args, saved)
        print(f"continuing {args.state} at iteration {saved['iteration']} "
              f"({saved['trained_s']:.0f} s trained, {len(saved['points'])} budgets measured)", flush=True)
    truth = json.loads(args.truth.read_text()) if args.truth else None
    sphere = _sphere(args.dataset, truth, args.scene_type)
    dataset = load_dataset(args.dataset, sphere=sphere, scene_type=args.scene_type)
    # the dataset's sparse points in the training sphere: one plane and patch for every budget
    smoothness_points = dataset_points(args.dataset, sphere)[0] if args.smoothness else None
    budgets_s = sorted(m * 60.0 for m in args.minutes)
    changes = preset_changes(args)
    if saved:
        rate = saved["calibrated_it_per_s"]
    else:
        settings, plan = new_run_settings(args.preset, dataset, args.scene_type, device, preset_changes=changes)
        rate = calibrate(dataset, settings, plan, device, args.calibration_steps)
    iterations = max(10, int(rate * budgets_s[-1]))
    print(f"calibration: {rate:.1f} it/s; {iterations} iterations laid over {budgets_s[-1]:.0f} s", flush=True)
    settings, plan = new_run_settings(args.preset, dataset, args.scene_type, device, iterations,
                                      preset_changes=changes)
    trainer = Trainer(dataset, settings, device=device, image_budget=plan.image_cache_bytes if plan else 1 << 30)
    work = Path(tempfile.mkdtemp(prefix="carrara-quality-"))
    try:
        if saved:
            found = load_latest(args.state)
            if found is None:
                raise SystemExit(f"{args.state}: progress.json but no checkpoint; start again with an empty --state")
            trainer.load_state_dict(found[1])
            initial, points, trained_s = saved["initial"], saved["points"], float(saved["trained_s"])
        else:
            initial = evaluate(trainer, args.resolution, args.truth, work)
            points, trained_s = [], 0.0
            print(f"untrained: PSNR {initial['psnr_held_out']:.2f} dB, chamfer {initial.get('chamfer')}", flush=True)
        # an evaluation's time, kept free at the end of the command's time along with the state's writing
        evaluation_s = max([initial["evaluation_seconds"]] + [p["evaluation_seconds"] for p in points])
        for budget in budgets_s[len(points):]:
            _bootstrap.cuda_sync(device)
            start = time.perf_counter()
            stopped = False
            while trainer.iteration < settings.iterations and trained_s + time.perf_counter() - start < budget:
                if args.wall_limit_s and trainer.iteration % 32 == 0 and (
                        time.perf_counter() - begun > args.wall_limit_s - args.save_reserve_s - 1.5 * evaluation_s):
                    stopped = True
                    break
                trainer.step()
                if trainer.iteration % 32 == 0:
                    _bootstrap.cuda_sync(device)
            _bootstrap.cuda_sync(device)
            trained_s += time.perf_counter() - start
            if stopped:
                options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                           if k in RUN_OPTIONS}
                _save_state(args.state, trainer, {"options": options, "calibrated_it_per_s": rate,
                                                  "commands": commands, "initial": initial,
                                                  "points": points, "trained_s": trained_s})
                print(f"stopped at iteration {trainer.iteration} after {trained_s:.0f} s of training, before "
                      f"--wall-limit-s; state in {args.state}: run again with --state {args.state} to go on",
                      flush=True)
                return None
            entry = {"minutes": budget / 60.0, "training_seconds": trained_s,
                     **evaluate(trainer, args.resolution, args.truth, work, args.keep_meshes, smoothness_points)}
            if "chamfer" in entry and "chamfer" in initial:
                entry["chamfer_over_untrained"] = entry["chamfer"] / initial["chamfer"]
                entry["chamfer_over_goal"] = entry["chamfer"] / CHAMFER_GOAL
            entry["psnr_gain_over_untrained_db"] = entry["psnr_held_out"] - initial["psnr_held_out"]
            points.append(entry)
            # the laid iterations can run out before the budget when the run is faster than its calibration
            short = (f", trained {trained_s / 60.0:.1f} min: the laid iterations ran out"
                     if trained_s < 0.98 * budget else "")
            print(f"{entry['minutes']:.1f} min (iteration {entry['iteration']}{short}): "
                  f"PSNR {entry['psnr_held_out']:.2f} dB (training photos {entry['psnr_training_views']:.2f})"
                  + (f", chamfer {entry['chamfer'] * 100:.3f} % of r (accuracy {entry['accuracy'] * 100:.3f}, "
                     f"completeness {entry['completeness'] * 100:.3f})" if "chamfer" in entry else ""), flush=True)
            if "smoothness" in entry:
                print(f"  smoothness: {summary(entry['smoothness'])}", flush=True)
    finally:
        trainer.close()
    if args.state:   # the run is whole: its state (GBs of checkpoint) must not be continued a second time
        for path in [args.state / "progress.json", *list_checkpoints(args.state)]:
            path.unlink(missing_ok=True)
    result: dict[str, Any] = {
        "dataset": str(args.dataset), "photos": len(dataset.views), "held_out_photos": len(dataset.validation),
        "use_alpha": dataset.use_alpha, "preset": args.preset, "scene_type": args.scene_type,
        "eikonal_ball_points_per_ray": settings.losses.eikonal_ball_points_per_ray, "preset_changes": changes,
        "calibrated_it_per_s": rate, "iterations": iterations, "rays_per_iter": settings.rays_per_iter,
        "commands": commands,
        "views_elevation_range_deg": truth["render"].get("elevation_range_deg") if truth else None,
        "plan": plan.to_json() if plan else None, "mesh_resolution": args.resolution,
        "baseline_untrained": initial, "points": points,
    }
    if args.truth:
        within = [p for p in points if p["minutes"] <= GOAL_MINUTES and "chamfer" in p]
        result["goal"] = {"chamfer_fraction_of_radius": CHAMFER_GOAL, "minutes": GOAL_MINUTES,
                          "met": bool(within) and min(p["chamfer"] for p in within) <= CHAMFER_GOAL}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=_bootstrap.REPO_ROOT / "benchmarks" / "data" / "bunny")
    parser.add_argument("--truth", type=Path, default=None, help="bunny_meta.json of render_bunny.py")
    parser.add_argument("--name", default="bunny", help="the result's name: quality_<name>_<gpu>.json")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--scene-type", default="object", choices=("object", "indoor", "outdoor"))
    parser.add_argument("--resolution", type=int, default=512, help="marching-cubes cells across the sphere")
    parser.add_argument("--calibration-steps", type=int, default=CALIBRATION_STEPS)
    parser.add_argument("--keep-meshes", type=Path, default=None,
                        help=f"folder for each evaluated mesh, decimated to {KEPT_FACES:,} faces")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one field of the preset for an A/B, dotted into its groups, e.g. "
                             "losses.curvature=1e-3 or grid_in_feature=false (repeatable)")
    parser.add_argument("--eikonal-ball-points", type=float, default=None,
                        help="eikonal points in the unit ball per ray, instead of the preset's (0 turns them off)")
    parser.add_argument("--wall-limit-s", type=float, default=None,
                        help="this command's time: stop training before it is up and write --state")
    parser.add_argument("--state", type=Path, default=None,
                        help="folder for a run split over commands: written when --wall-limit-s stops it, "
                             "read (with the run's options) when it holds a state")
    parser.add_argument("--save-reserve-s", type=float, default=SAVE_RESERVE_S,
                        help="seconds of --wall-limit-s kept for writing the state")
    parser.add_argument("--smoothness", action="store_true",
                        help="also measure each budget's mesh on a flat patch of the dataset's dominant plane "
                             "(surface_smoothness.py; from its COLMAP points, else from the mesh)")
    parser.add_argument("--smoke", action="store_true", help="CPU, the ci preset, seconds: checks the script runs")
    args = parser.parse_args()
    if args.wall_limit_s and not args.state:
        parser.error("--wall-limit-s needs --state, the folder the stopped run is written to")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        args.preset, args.minutes, args.resolution, args.calibration_steps = "ci", [0.05, 0.1], 48, 3
    elif device.type != "cuda":
        raise SystemExit("bench_quality.py needs a CUDA GPU (use --smoke to check the script on the CPU)")
    figures = run(args, device)
    if figures is None:
        return
    payload = {**CONTEXT, "benchmark": "quality", "name": args.name, **figures}
    name = f"quality_{args.name}_" + (_bootstrap.gpu_slug(CONTEXT["device"]) if device.type == "cuda"
                                      else "cpu-smoke")
    for path in _bootstrap.write_results(name, payload):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
