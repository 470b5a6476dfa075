"""Hash-grid encoding throughput, forward + backward, on the GPU: our Triton kernels against the plain PyTorch
reference and ``torch.compile`` of it, all in one run (issue 4, benchmark 7a).

    python3 benchmarks/bench_encoding.py                # on the GPU machine (about 3-4 minutes)
    python3 benchmarks/bench_encoding.py --smoke        # here, on the CPU, through Triton's interpreter: tiny sizes

Settings: 16 levels, 32 -> 2048, F=2 with T=2^19 and F=8 with T=2^22, N = 2^21 fresh uniform random points per set
(three sets, rotated, so no set sits in L2), table uniform in [-1, 1]. Every Triton launch shape is first checked
against the float64 reference (values and table gradient, all levels and 5 active); then each is timed with
``triton.testing.do_bench`` (median; it flushes L2 before each call). The best shape is also timed on
ray-ordered samples (what training feeds: 128 samples along each of 16384 rays) and with 8 active levels.
Results: benchmarks/results/encoding_<gpu>.json (and $OUT/ when set), rewritten after each stage, so a run cut
short still leaves what it measured. The goal (H100): >= 1e9 points/s at F=2 and >= 0.3e9 at F=8, fwd + bwd.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Callable

import _bootstrap

CONTEXT = _bootstrap.run_context()

import torch  # noqa: E402  (after the bootstrap, like the carrara imports)

from carrara.backend.model.hashgrid import HashGridConfig, encode_reference  # noqa: E402
from carrara.backend.model.hashgrid_launch import GRAD_PARTITION_BUDGET_BYTES, TritonLaunch  # noqa: E402

SETTINGS = ({"name": "F2_T19", "features_per_level": 2, "log2_hashmap_size": 19, "goal_points_per_s": 1.0e9},
            {"name": "F8_T22", "features_per_level": 8, "log2_hashmap_size": 22, "goal_points_per_s": 0.3e9})
VARIANTS = (TritonLaunch(block=256, num_warps=4, levels_per_program=1),
            TritonLaunch(block=128, num_warps=4, levels_per_program=1),
            TritonLaunch(block=512, num_warps=8, levels_per_program=1),
            TritonLaunch(block=256, num_warps=8, levels_per_program=1),
            TritonLaunch(block=128, num_warps=4, levels_per_program=4),
            TritonLaunch(block=256, num_warps=8, levels_per_program=4),
            TritonLaunch(block=256, num_warps=4, levels_per_program=1, merge_x_pairs=True),
            TritonLaunch(block=128, num_warps=4, levels_per_program=4, merge_x_pairs=True),
            # version 1.2: the pairs merged in the forward too (beside the two above: the forward's own effect) ...
            TritonLaunch(block=256, num_warps=4, levels_per_program=1, merge_x_pairs=True, merge_x_pairs_forward=True),
            TritonLaunch(block=128, num_warps=4, levels_per_program=4, merge_x_pairs=True, merge_x_pairs_forward=True),
            # ... and the backward in passes over levels above the budget (beside b128 w4 lpp1; at F=2 a control)
            TritonLaunch(block=128, num_warps=4, levels_per_program=1, grad_partitions=4),
            TritonLaunch(block=128, num_warps=4, levels_per_program=1, grad_partitions=8))
CHECK_TOLERANCE = 1e-5   # ||triton - float64 reference|| / ||reference||; float32 arithmetic lands near 1e-7


def variant_name(launch: TritonLaunch) -> str:
    return f"triton_{launch.name}"


def rel_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference).norm() / reference.norm().clamp_min(1e-300))


def ray_ordered_points(n_points: int, samples_per_ray: int, config: HashGridConfig, device: str) -> torch.Tensor:
    """Samples along rays from cameras on a radius-3 sphere through the unit sphere, ray-major (as training)."""
    n_rays = n_points // samples_per_ray
    origin = torch.nn.functional.normalize(torch.randn(n_rays, 3, device=device), dim=1) * 3.0
    target = torch.nn.functional.normalize(torch.randn(n_rays, 3, device=device), dim=1) * torch.rand(
        n_rays, 1, device=device) ** (1 / 3)
    direction = torch.nn.functional.normalize(target - origin, dim=1)
    # ray-unit-sphere intersection: |o + t d|^2 = 1; the rays aim inside it, so both roots are real
    b = (origin * direction).sum(dim=1, keepdim=True)
    disc = (b * b - (origin * origin).sum(dim=1, keepdim=True) + 1.0).clamp_min(0.0).sqrt()
    near, far = -b - disc, -b + disc
    t = near + (far - near) * torch.rand(n_rays, samples_per_ray, device=device).sort(dim=1).values
    points = origin[:, None, :] + t[..., None] * direction[:, None, :]
    return config.to_unit_cube(points.reshape(-1, 3)).contiguous()


class Timer:
    """Median milliseconds per call: triton's do_bench on CUDA, a plain clock in --smoke (interpreter) mode."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            from triton.testing import do_bench
            return float(do_bench(fn, warmup=25, rep=200, return_mode="median"))
        times = []
        for _ in range(2):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return sorted(times)[len(times) // 2]


def copy_bandwidth(timer: Timer, device: str, n_bytes: int) -> float:
    """Device-to-device copy, bytes read plus written per second: the measured memory ceiling."""
    src = torch.rand(n_bytes // 4, device=device)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    return 2 * n_bytes / (ms * 1e-3)


def check_variant(hashgrid_triton: Any, config: HashGridConfig, launch: TritonLaunch, n_points: int,
                  device: str) -> dict[str, float]:
    """Values (every element written: the output starts as NaN) and table gradient against float64, fresh inputs."""
    errors: dict[str, float] = {}
    table = torch.empty(config.n_params, device=device).uniform_(-1.0, 1.0)
    x = torch.rand(n_points, 3, device=device)
    for active in (config.n_levels, 5):
        out = torch.full((n_points, config.output_dim), float("nan"), device=device)
        hashgrid_triton.forward_into(out, x, table, config, active, launch)
        grad_out = torch.randn(n_points, config.output_dim, device=device)
        grad = hashgrid_triton.backward_into(torch.zeros_like(table), x, grad_out, config, active, launch)
        table64 = table.double().requires_grad_()
        reference = encode_reference(x.double(), table64, config, active)
        (reference * grad_out.double()).sum().backward()
        unwritten = int(out.isnan().sum())
        errors[f"values_active{active}"] = math.inf if unwritten else rel_error(out, reference.detach())
        errors[f"table_grad_active{active}"] = rel_error(grad, table64.grad)
        del table64, reference
    return errors


def time_compiled_reference(config: HashGridConfig, table: torch.Tensor, timed: Callable[..., None]) -> str:
    """Times ``torch.compile`` of the reference, or says why it could not run.

    Its memory is set by the table, not the points: the compiled backward keeps a table-sized gradient buffer for
    each gather. With one gather per corner (the reference until 2026-12-02) that was 128 buffers of 1.4 GB at
    F=8, T=2^22, more than the H200's 139 GiB at any point count (it failed at 2^21 and at 2^15 alike); with the
    8 corners gathered at once it is 16.
    """
    try:
        compiled = torch.compile(lambda x, t: encode_reference(x, t, config, None), dynamic=False)
        timed("torch_compile_reference", lambda x: compiled(x, table))
        return "timed"
    except torch.OutOfMemoryError as exc:
        return f"failed: out of memory: {exc}"[:500]
    except Exception as exc:   # record why, keep the rest of the run
        return f"failed: {type(exc).__name__}: {exc}"[:500]


def bench_setting(setting: dict[str, Any], args: argparse.Namespace, timer: Timer, device: str,
                  record: Callable[[], None], results: dict[str, Any]) -> None:
    from carrara.backend.model import hashgrid_triton

    config = HashGridConfig(features_per_level=setting["features_per_level"],
                            log2_hashmap_size=setting["log2_hashmap_size"])
    if args.smoke:
        config = HashGridConfig(n_levels=6, features_per_level=setting["features_per_level"],
                                log2_hashmap_size=10, base_resolution=8, max_resolution=64)
    n_points = 1 << args.points_log2
    entry: dict[str, Any] = {"config": {k: getattr(config, k) for k in (
        "n_levels", "features_per_level", "log2_hashmap_size", "base_resolution", "max_resolution")},
        "n_params": config.n_params, "table_mib": config.n_params * 4 / 2 ** 20, "n_points": n_points,
        "goal_points_per_s": setting["goal_points_per_s"], "checks": {}, "timings": {}}
    results["settings"][setting["name"]] = entry
    variants = VARIANTS[:2] if args.smoke else VARIANTS
    variants = tuple(v for v in variants if not ((v.merge_x_pairs or v.merge_x_pairs_forward)   # ignored there
                                                 and config.features_per_level > 2))

    for launch in variants:   # correctness first; this also compiles every kernel before any timing
        errors = check_variant(hashgrid_triton, config, launch, args.check_points, device)
        entry["checks"][variant_name(launch)] = {"rel_errors": errors,
                                                 "ok": all(e < CHECK_TOLERANCE for e in errors.values())}
        print(f"[{setting['name']}] check {variant_name(launch)}: "
              + ", ".join(f"{k}={v:.2e}" for k, v in errors.items()), flush=True)
    record()

    table = torch.nn.Parameter(torch.empty(config.n_params, device=device).uniform_(-1.0, 1.0))
    point_sets = [torch.rand(n_points, 3, device=device) for _ in range(3)]
    grad_out = torch.randn(n_points, config.output_dim, device=device)
    turn = [0]

    def next_points() -> torch.Tensor:
        turn[0] += 1
        return point_sets[turn[0] % len(point_sets)]

    def timed(name: str, forward: Callable[[torch.Tensor], torch.Tensor], backward: bool = True,
              points: Callable[[], torch.Tensor] = next_points) -> None:
        """Times ``forward`` (and its backward) on ``n_points`` points a call; the rate is points per second."""
        if backward:
            ms = timer(lambda: torch.autograd.grad(forward(points()), table, grad_out))
        else:
            with torch.no_grad():
                ms = timer(lambda: forward(points()))
        kind = "fwd_bwd" if backward else "fwd"
        entry["timings"].setdefault(name, {})[kind] = {"ms": ms, "points_per_s": n_points / (ms * 1e-3)}
        print(f"[{setting['name']}] {name:34s} {kind:7s} {ms:9.3f} ms {n_points / (ms * 1e-3) / 1e9:8.3f} G points/s",
              flush=True)
        record()

    for launch in variants:
        if not entry["checks"][variant_name(launch)]["ok"]:
            continue   # a wrong kernel's speed means nothing
        timed(variant_name(launch), lambda x, launch=launch: hashgrid_triton.encode(x, table, config, None, launch),
              backward=False)
        timed(variant_name(launch), lambda x, launch=launch: hashgrid_triton.encode(x, table, config, None, launch))
    timed("torch_reference", lambda x: encode_reference(x, table, config, None))

    triton_runs = {name: t["fwd_bwd"]["ms"] for name, t in entry["timings"].items() if name.startswith("triton")}
    if triton_runs:
        best_name = min(triton_runs, key=triton_runs.get)
        best = next(launch for launch in variants if variant_name(launch) == best_name)
        entry["best_triton"] = best_name
        rays = ray_ordered_points(n_points, 128, config, device)
        timed(f"{best_name}@rays", lambda x: hashgrid_triton.encode(x, table, config, None, best),
              points=lambda: rays)
        timed(f"{best_name}@active8", lambda x: hashgrid_triton.encode(x, table, config, min(8, config.n_levels), best))

    compile_used = results["compile_seconds_total"]
    if args.skip_compile:
        entry["torch_compile"] = "skipped: --skip-compile"
    elif compile_used > args.compile_budget_s:
        entry["torch_compile"] = f"skipped: {compile_used:.0f} s already spent compiling (--compile-budget-s)"
    else:
        start = time.perf_counter()
        entry["torch_compile"] = time_compiled_reference(config, table, timed)
        entry["torch_compile_seconds"] = time.perf_counter() - start
        results["compile_seconds_total"] += entry["torch_compile_seconds"]

    rates = {name: t["fwd_bwd"]["points_per_s"] for name, t in entry["timings"].items() if "fwd_bwd" in t}
    if "best_triton" in entry:
        best = rates[entry["best_triton"]]
        entry["best_points_per_s"] = best
        entry["meets_goal"] = best >= setting["goal_points_per_s"]
        entry["speedup_vs"] = {name: best / rate for name, rate in rates.items()
                               if name in ("torch_reference", "torch_compile_reference")}
    record()


def print_summary(results: dict[str, Any]) -> None:
    print("\n=== encoding forward+backward (median), points/s; ratios are the best Triton shape over each baseline ===")
    print(f"device: {results['device'].get('gpu')}  copy bandwidth: {results.get('copy_bandwidth_bytes_per_s', 0) / 1e12:.2f} TB/s"
          f"  commit: {results['git_commit']}")
    for name, entry in results["settings"].items():
        bad = [v for v, c in entry["checks"].items() if not c["ok"]]
        print(f"\n{name}: N={entry['n_points']}  table {entry['table_mib']:.0f} MiB  checks: "
              + ("all ok" if not bad else f"FAILED {bad}"))
        for variant, t in entry["timings"].items():
            cells = "  ".join(f"{kind} {v['ms']:8.3f} ms {v['points_per_s'] / 1e9:7.3f} G/s" for kind, v in t.items())
            print(f"  {variant:40s} {cells}")
        if "best_triton" in entry:
            ratios = "  ".join(f"x{r:.1f} vs {n}" for n, r in entry["speedup_vs"].items())
            print(f"  best {entry['best_triton']}: {entry['best_points_per_s'] / 1e9:.3f} G points/s "
                  f"(goal {entry['goal_points_per_s'] / 1e9:.2f}: {'MET' if entry['meets_goal'] else 'missed'})  {ratios}")
        if "torch_compile" in entry:
            print(f"  torch.compile: {entry['torch_compile']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-log2", type=int, default=21, help="points per call, as a power of two")
    parser.add_argument("--check-points", type=int, default=1 << 16, help="points in each correctness check")
    parser.add_argument("--skip-compile", action="store_true", help="do not time torch.compile of the reference")
    parser.add_argument("--compile-budget-s", type=float, default=150.0,
                        help="no further torch.compile once this many seconds went into compiling")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU run through Triton's interpreter at tiny sizes, to check the script itself")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, TRITON_INTERPRET="1"))
        cuda = False
        args.points_log2, args.check_points = min(args.points_log2, 8), min(args.check_points, 64)
    elif not cuda:
        print("bench_encoding.py needs a CUDA GPU (use --smoke to check the script on the CPU)", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    timer = Timer(cuda)
    results: dict[str, Any] = {"benchmark": "encoding", **CONTEXT, "compile_seconds_total": 0.0,
                               "check_tolerance": CHECK_TOLERANCE,
                               "grad_partition_budget_bytes": GRAD_PARTITION_BUDGET_BYTES, "settings": {}}
    name = f"encoding_{_bootstrap.gpu_slug(CONTEXT['device'])}"

    def record() -> None:
        if args.smoke:
            return   # a smoke run measures nothing worth keeping
        _bootstrap.write_results(name, results)

    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))   # fresh inputs every run
    results["copy_bandwidth_bytes_per_s"] = copy_bandwidth(timer, device, 1 << (30 if cuda else 20))
    record()
    for setting in SETTINGS:
        bench_setting(setting, args, timer, device, record, results)
        if cuda:
            torch.cuda.empty_cache()
    print_summary(results)
    if not args.smoke:
        print("\nwritten:", ", ".join(str(p) for p in _bootstrap.write_results(name, results)))
    failed = any(not c["ok"] for e in results["settings"].values() for c in e["checks"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
