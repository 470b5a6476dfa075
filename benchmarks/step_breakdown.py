"""Where a training step's time goes: the engine's ``carrara.*`` ranges (backend/profiling.py) read from a torch
profiler run, with each part's forward and backward apart.

Each op's time (the CUDA kernels it launched, or its own CPU time in ``--smoke``) goes to the innermost ranges
around it, kept as a path ("render/sdf_with_taps/encoding"). Backward ops run outside those ranges (on the GPU on
autograd's own thread), so each is traced back through the autograd node it belongs to: the profiler records the
node's sequence number and forward thread on its backward event, and the same number on the forward op that
created the node; the backward's time goes to that forward op's ranges, as their backward.

The 4-tap numerical gradient runs the SDF network once on 5N points (each point and its 4 taps), so its cost is
not a range of its own: ``numerical_gradient_taps`` is 4/5 of the encoding and SDF-MLP time under
``sdf_with_taps``, forward and backward; the ``numerical_gradient`` part is only the stencil arithmetic.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable

import torch
from torch.autograd import DeviceType

from carrara.backend.profiling import RANGE_PREFIX

BACKWARD_SCOPE = 1          # at::RecordScope::BACKWARD_FUNCTION: an autograd node run by the backward pass
NODE_WRAPPER = "autograd::engine::evaluate_function"   # the engine's range around a node: carries its number too
OUTSIDE = "(outside ranges)"
UNTRACED_BACKWARD = "(backward without a forward range)"
TAPS_SHARE = 4.0 / 5.0      # of the points with taps, the taps themselves
PHASES = ("forward", "backward")


def profile_steps(step: Callable[[], Any], steps: int, device: torch.device) -> tuple[Any, float]:
    """The profiler after ``steps`` calls of ``step``, and their wall time in seconds (profiler overhead included)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return prof, seconds


def _ranges(event) -> list[str]:
    """The carrara ranges around an event (itself included), outermost first."""
    names = []
    while event is not None:
        if event.name.startswith(RANGE_PREFIX):
            names.append(event.name[len(RANGE_PREFIX):])
        event = event.cpu_parent
    return names[::-1]


def _node_owners(cpu_events: list) -> tuple[dict[tuple[int, int], Any], dict[int, Any]]:
    """Forward ops by (thread, sequence number) and by number alone. Ops that create no autograd node carry the
    next node's number too, so the latest op with a number is the one that created that node."""
    by_thread: dict[tuple[int, int], Any] = {}
    by_number: dict[int, Any] = {}
    for event in sorted(cpu_events, key=lambda e: e.time_range.start):
        if (event.sequence_nr >= 0 and event.scope != BACKWARD_SCOPE
                and not event.name.startswith((RANGE_PREFIX, NODE_WRAPPER))):
            by_thread[(event.thread, event.sequence_nr)] = event
            by_number[event.sequence_nr] = event
    return by_thread, by_number


def _place(event, owners: tuple[dict, dict]) -> tuple[str, str]:
    """(phase, range path) of an op: inside a backward node, the ranges of the forward op that made the node."""
    node = event
    while node is not None:
        if node.scope == BACKWARD_SCOPE or node.name.startswith(NODE_WRAPPER):   # AccumulateGrad has no number
            owner = (owners[0].get((node.fwd_thread, node.sequence_nr)) or owners[1].get(node.sequence_nr)
                     if node.sequence_nr >= 0 else None)
            path = "/".join(_ranges(owner)) if owner is not None else ""
            return "backward", path or UNTRACED_BACKWARD
        node = node.cpu_parent
    return "forward", "/".join(_ranges(event)) or OUTSIDE


def _on_device(name: str) -> bool:
    """Whether a device event is work: kineto also puts each range on the GPU's timeline (as a user annotation
    spanning its kernels), under the range's own name."""
    return not name.startswith(RANGE_PREFIX)


def attribute(events: list, device_time: bool) -> tuple[dict[tuple[str, str], float], float]:
    """Microseconds per (range path, phase), and the device time no op claimed (0 when timing the CPU)."""
    cpu_events = [e for e in events if e.device_type == DeviceType.CPU and not e.is_async]
    owners = _node_owners(cpu_events)
    totals: dict[tuple[str, str], float] = defaultdict(float)
    claimed = 0.0
    for event in cpu_events:
        if device_time:
            us = sum(k.duration for k in event.kernels if _on_device(k.name))
        else:
            us = event.self_cpu_time_total
        if us > 0:
            phase, path = _place(event, owners)
            totals[(path, phase)] += us
            claimed += us
    unclaimed = 0.0
    if device_time:
        on_device = sum(e.time_range.elapsed_us() for e in events
                        if e.device_type == DeviceType.CUDA and _on_device(e.name))
        unclaimed = max(0.0, on_device - claimed)
    return dict(totals), unclaimed


def _rows(totals: dict[tuple[str, str], float], key: Callable[[str], str], steps: int,
          measured_us: float) -> dict[str, dict[str, float]]:
    """Per-step milliseconds grouped by ``key`` of the path, forward and backward apart, largest first."""
    grouped: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(PHASES, 0.0))
    for (path, phase), us in totals.items():
        grouped[key(path)][phase] += us
    rows = {}
    for name, phases in sorted(grouped.items(), key=lambda item: -sum(item[1].values())):
        total = sum(phases.values())
        rows[name] = {"forward_ms": phases["forward"] / steps / 1e3, "backward_ms": phases["backward"] / steps / 1e3,
                      "total_ms": total / steps / 1e3, "share": total / measured_us if measured_us else 0.0}
    return rows


def _taps(totals: dict[tuple[str, str], float], steps: int, measured_us: float) -> dict[str, float]:
    phases = dict.fromkeys(PHASES, 0.0)
    for (path, phase), us in totals.items():
        parts = path.split("/")
        if "sdf_with_taps" in parts and parts[-1] in ("encoding", "sdf_mlp"):
            phases[phase] += TAPS_SHARE * us
    total = sum(phases.values())
    return {"forward_ms": phases["forward"] / steps / 1e3, "backward_ms": phases["backward"] / steps / 1e3,
            "total_ms": total / steps / 1e3, "share": total / measured_us if measured_us else 0.0}


def breakdown(prof, steps: int, wall_s: float, device: torch.device, step_ms_unprofiled: float) -> dict[str, Any]:
    """The JSON figures of one profiled run of ``steps`` steps."""
    device_time = device.type == "cuda"
    totals, unclaimed_us = attribute(list(prof.events()), device_time)
    measured_us = sum(totals.values())
    result = {
        "profiled_steps": steps,
        "timed": f"{'CUDA kernel' if device_time else 'CPU self'} time of the ops in each range",
        "step_ms": {"unprofiled_wall": step_ms_unprofiled, "profiled_wall": wall_s / steps * 1e3,
                    "measured": measured_us / steps / 1e3, "device_unclaimed": unclaimed_us / steps / 1e3},
        "parts": _rows(totals, lambda path: path.rsplit("/", 1)[-1], steps, measured_us),
        "paths": _rows(totals, lambda path: path, steps, measured_us),
        "numerical_gradient_taps": _taps(totals, steps, measured_us),
    }
    if device_time:   # below 1, the GPU waits for the CPU to launch work for part of the step
        result["device_busy_fraction"] = (measured_us + unclaimed_us) / steps / 1e3 / step_ms_unprofiled
    return result


def table(name: str, result: dict[str, Any], top_paths: int = 12) -> str:
    """The breakdown as text: parts largest first, then the largest paths."""
    ms = result["step_ms"]
    lines = [f"{name}: {result['timed']}, {result['profiled_steps']} steps; {ms['measured']:.2f} ms a step measured, "
             f"{ms['unprofiled_wall']:.2f} ms wall without the profiler, {ms['device_unclaimed']:.2f} ms unclaimed",
             f"  {'part':<44} {'fwd ms':>8} {'bwd ms':>8} {'total ms':>9} {'share':>7}"]

    def row(label: str, r: dict[str, float]) -> str:
        return (f"  {label:<44} {r['forward_ms']:8.3f} {r['backward_ms']:8.3f} {r['total_ms']:9.3f} "
                f"{100 * r['share']:6.1f}%")

    lines += [row(part, r) for part, r in result["parts"].items()]
    lines.append(row("= numerical-gradient taps (4/5 of SDF)", result["numerical_gradient_taps"]))
    lines.append(f"  {'largest paths':<44}")
    lines += [row(path[-44:], r) for path, r in list(result["paths"].items())[:top_paths]]
    return "\n".join(lines)
