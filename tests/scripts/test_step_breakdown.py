"""The step breakdown's attribution (benchmarks/step_breakdown.py): forward time to the innermost ranges around
an op, backward time through the autograd node to the ranges of the forward op that made it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from carrara.backend.profiling import step_range

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("step_breakdown", ROOT / "benchmarks" / "step_breakdown.py")
step_breakdown = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(step_breakdown)


class Gather(torch.autograd.Function):
    """Stands in for the hash-grid kernels: a custom function whose backward is its own node."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x @ table

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return None, x.t() @ grad


def _profiled_step():
    table, weight = torch.nn.Parameter(torch.randn(32, 32)), torch.nn.Parameter(torch.randn(32, 32))
    with torch.profiler.profile() as prof:
        x = torch.randn(256, 32)
        with step_range("render"):
            with step_range("encoding"):
                features = Gather.apply(x, table)
            with step_range("mlp"):
                loss = torch.tanh(features @ weight).sum()
        with step_range("backward_call"):
            loss.backward()
    return prof


def test_ranges_cost_nothing_without_a_profiler():
    assert step_range("a") is step_range("b")   # one shared do-nothing context
    with torch.profiler.profile() as prof, step_range("a"):
        pass
    assert any(e.name == "carrara.a" for e in prof.events())


def test_backward_ops_are_traced_to_the_ranges_of_their_forward_op():
    events = list(_profiled_step().events())
    owners = step_breakdown._node_owners([e for e in events if e.device_type == torch.autograd.DeviceType.CPU])
    places = {e.name: step_breakdown._place(e, owners) for e in events}
    assert places["GatherBackward"] == ("backward", "render/encoding")
    assert places["TanhBackward0"] == ("backward", "render/mlp")
    assert places["aten::tanh"] == ("forward", "render/mlp")
    assert places["torch::autograd::AccumulateGrad"] == ("backward", step_breakdown.UNTRACED_BACKWARD)
    totals, unclaimed = step_breakdown.attribute(events, device_time=False)
    assert totals[("render/encoding", "backward")] > 0 and totals[("render/mlp", "backward")] > 0
    assert unclaimed == 0


def test_the_breakdown_rolls_paths_up_to_parts_that_share_the_measured_time():
    result = step_breakdown.breakdown(_profiled_step(), 1, 0.01, torch.device("cpu"), 10.0)
    assert result["paths"]["render/encoding"]["backward_ms"] > 0
    assert result["parts"]["encoding"]["total_ms"] == result["paths"]["render/encoding"]["total_ms"]
    assert abs(sum(r["share"] for r in result["parts"].values()) - 1.0) < 1e-9
    totals = [r["total_ms"] for r in result["parts"].values()]
    assert totals == sorted(totals, reverse=True)
    assert "encoding" in step_breakdown.table("toy", result)
