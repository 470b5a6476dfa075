"""The fused softplus-and-head kernels against PyTorch in float64, on the CPU through Triton's interpreter.

TRITON_INTERPRET=1 is read when triton is imported and must not leak into other tests, so the checks run in a
child process: this file, run as a script. Cases: rows not filling a block, a width that is not a power of two,
pre-activations on both sides of softplus's linear threshold, and a backward whose programs each reduce several
blocks. The GPU runs them at full size in test_training_gpu.py.
"""
from __future__ import annotations

import os

CASES = 3


def test_softplus_head_matches_pytorch_in_interpreter() -> None:
    from testkit import run_in_triton_interpreter   # here: the child runs this file without tests/ on its path
    out = run_in_triton_interpreter(__file__)
    assert f"softplus-head checks passed: {CASES}" in out, out


def _run_checks() -> int:
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through the test: it sets TRITON_INTERPRET=1 first"
    import torch
    import torch.nn.functional as F

    from carrara.backend.model import softplus_head_triton as kernels

    beta, passed = 100.0, 0
    for rows, width, programs in ((45, 64, 1024), (70, 48, 2), (33, 16, 1)):
        kernels.BACKWARD_PROGRAMS = programs          # 2 and 1: programs loop over several blocks
        g = torch.Generator().manual_seed(rows)
        z = (torch.randn(rows, width, generator=g) * 0.1).float()   # beta * z spans the threshold of 20
        z[0, :4] = torch.tensor([0.5, -0.5, 0.2, 0.19])
        weight, bias = torch.randn(width, generator=g), torch.randn(1, generator=g)
        upstream = torch.randn(rows, generator=g)
        ours = [t.clone().requires_grad_() for t in (z, weight, bias)]
        exact = [t.double().requires_grad_() for t in (z, weight, bias)]
        out = kernels.softplus_head(*ours, beta)
        expected = F.softplus(exact[0], beta=beta) @ exact[1] + exact[2]
        (out * upstream).sum().backward()
        (expected * upstream.double()).sum().backward()
        assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-6), (rows, width)
        for name, a, b in zip(("z", "weight", "bias"), ours, exact):
            assert torch.allclose(a.grad.double(), b.grad, rtol=1e-5, atol=1e-5), (rows, width, name)
        passed += 1
    return passed


if __name__ == "__main__":
    print(f"softplus-head checks passed: {_run_checks()}")
