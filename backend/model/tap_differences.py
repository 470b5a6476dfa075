"""The first layer's product with the taps' input differences, on bf16 tensor cores at fp32 accuracy.

A tap's pre-activation is written z_i = z_0 + W d_i, with d_i = in_i - in_0 its (fp32) input difference from the
centre's: rounding then errs relative to the small difference, not to the whole row, where bf16 or TF32 rows err
as much as the differences themselves. Both factors are split into bf16 halves, d = d_hi + d_lo and
W = W_hi + W_lo, and one GEMM with K tripled sums W_hi d_hi + W_hi d_lo + W_lo d_hi in fp32 (the dropped
W_lo d_lo is 2^-16 relative). W_hi alone (W rounded once) adds no noise, but it biases the gradient by about
2^-9 relative (measured: 10x the fp32 path's error), hence the third term.

The backward is single bf16 GEMMs of the rounded output gradient: no 1/eps noise either, because the centre's
input gradient is minus the sum of these same rounded tap gradients, so their large +-1/eps parts cancel exactly;
what remains is a bf16-sized relative error of the parameter gradients (about 2e-3, measured), harmless to Adam.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: bf16 tensor cores want K a multiple of 8 elements (16 bytes); zero columns pad it.
ALIGNMENT = 8


def bf16_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b of bf16 matrices with fp32 sums and result: cuBLAS's bf16 GEMM on CUDA; on the CPU, where torch has no
    such kernel, the same numbers from fp32 (a product of two bf16 values is exact in fp32)."""
    if a.is_cuda:
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a.float(), b.float())


def bf16_halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 t as hi + lo, both bf16: t to about 2^-16 relative, where t.bfloat16() alone keeps 2^-9."""
    high = t.bfloat16()
    return high, (t - high.float()).bfloat16()


class TapDifferenceProduct(torch.autograd.Function):
    """(M, K) fp32 differences d and an (H, K) weight W -> (M, H) fp32 W d, see the module docstring."""

    @staticmethod
    def forward(ctx, differences: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        k = differences.shape[1]
        padding = (0, -k % ALIGNMENT)
        high, low = bf16_halves(F.pad(differences.float(), padding))
        weight_high, weight_low = bf16_halves(F.pad(weight.float(), padding))
        ctx.save_for_backward(high, weight_high)
        ctx.k = k
        return bf16_product(torch.cat((high, low, high), 1), torch.cat((weight_high, weight_high, weight_low), 1).t())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        high, weight_high = ctx.saved_tensors
        rounded_grad = grad.bfloat16()
        grad_differences = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_differences = bf16_product(rounded_grad, weight_high)[:, :ctx.k]
        if ctx.needs_input_grad[1]:
            grad_weight = bf16_product(rounded_grad.t(), high)[:, :ctx.k]
        return grad_differences, grad_weight


def tap_difference_product(differences: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """W d for each row d of ``differences``, as ``F.linear(differences, weight)`` without bias, on bf16 GEMMs."""
    return TapDifferenceProduct.apply(differences, weight)
