"""The SDF's last step, ``head(softplus(z))``, as one Triton kernel each way.

The SDF MLP runs on five rows a sample (the point and its four gradient taps), so at the ``standard`` preset its
hidden pre-activation z is 1.66 M x 256 floats (1.7 GB), and PyTorch's softplus, head and their backward pass over
tensors of that size about ten times a step: on an H100 that made the SDF MLP half of a step's kernel time, bound
by memory, not arithmetic (benchmarks/NOTES-presets.md). Here the forward reads z once and writes one value a row;
the backward reads z once more and writes its gradient, the head's weight gradient reduced on the way. The
values are those of ``F.softplus(z, beta)`` (threshold 20, as PyTorch's) and a linear head, in fp32; only the
order of the 256-term sums differs.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_ROWS = 32
BACKWARD_PROGRAMS = 1024      # programs of the backward; each reduces its rows' weight gradient in registers


@triton.jit
def _softplus(z, bz, BETA: tl.constexpr):
    """PyTorch's softplus: linear where beta * z > 20."""
    return tl.where(bz > 20.0, z, tl.log(1.0 + tl.exp(tl.minimum(bz, 20.0))) / BETA)


@triton.jit
def _forward_kernel(z_ptr, w_ptr, b_ptr, out_ptr, n_rows, width, BETA: tl.constexpr, BLOCK: tl.constexpr,
                    WIDTH: tl.constexpr):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    cols = tl.arange(0, WIDTH)
    row_ok, col_ok = rows < n_rows, cols < width
    z = tl.load(z_ptr + rows[:, None].to(tl.int64) * width + cols[None, :],
                mask=row_ok[:, None] & col_ok[None, :], other=0.0)
    w = tl.load(w_ptr + cols, mask=col_ok, other=0.0)
    h = _softplus(z, BETA * z, BETA)
    tl.store(out_ptr + rows, tl.sum(h * w[None, :], axis=1) + tl.load(b_ptr), mask=row_ok)


@triton.jit
def _backward_kernel(z_ptr, w_ptr, g_ptr, grad_z_ptr, partial_w_ptr, n_rows, width, blocks_per_program,
                     BETA: tl.constexpr, BLOCK: tl.constexpr, WIDTH: tl.constexpr):
    cols = tl.arange(0, WIDTH)
    col_ok = cols < width
    w = tl.load(w_ptr + cols, mask=col_ok, other=0.0)
    grad_w = tl.zeros([WIDTH], dtype=tl.float32)
    first = tl.program_id(0) * blocks_per_program
    for block in range(first, first + blocks_per_program):
        rows = block * BLOCK + tl.arange(0, BLOCK)
        row_ok = rows < n_rows
        mask = row_ok[:, None] & col_ok[None, :]
        offsets = rows[:, None].to(tl.int64) * width + cols[None, :]
        z = tl.load(z_ptr + offsets, mask=mask, other=0.0)
        g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
        bz = BETA * z
        slope = tl.where(bz > 20.0, 1.0, tl.sigmoid(bz))
        tl.store(grad_z_ptr + offsets, g[:, None] * w[None, :] * slope, mask=mask)
        grad_w += tl.sum(_softplus(z, bz, BETA) * g[:, None], axis=0)
    tl.store(partial_w_ptr + tl.program_id(0) * WIDTH + cols, grad_w)


class _SoftplusHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, beta: float) -> torch.Tensor:
        z = z.contiguous()
        rows, width = z.shape
        out = torch.empty(rows, dtype=torch.float32, device=z.device)
        if rows:
            _forward_kernel[(triton.cdiv(rows, BLOCK_ROWS),)](
                z, weight.contiguous(), bias, out, rows, width, BETA=beta, BLOCK=BLOCK_ROWS,
                WIDTH=triton.next_power_of_2(width))
        ctx.save_for_backward(z, weight)
        ctx.beta = beta
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, weight = ctx.saved_tensors
        rows, width = z.shape
        blocks = triton.cdiv(rows, BLOCK_ROWS)
        programs = max(1, min(blocks, BACKWARD_PROGRAMS))
        padded = triton.next_power_of_2(width)
        grad_z = torch.empty_like(z)
        partial = torch.zeros(programs, padded, dtype=torch.float32, device=z.device)
        grad = grad.float().contiguous()
        if rows:
            _backward_kernel[(programs,)](
                z, weight.contiguous(), grad, grad_z, partial, rows, width, triton.cdiv(blocks, programs),
                BETA=ctx.beta, BLOCK=BLOCK_ROWS, WIDTH=padded)
        return grad_z, partial.sum(0)[:width], grad.sum().reshape(1), None


def softplus_head(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, beta: float) -> torch.Tensor:
    """(M, H) fp32 pre-activations, (H,) head weight, (1,) bias -> (M,) ``softplus(z, beta) @ weight + bias``."""
    if z.dtype != torch.float32 or z.dim() != 2 or weight.shape != (z.shape[1],) or bias.shape != (1,):
        raise ValueError(f"softplus_head needs fp32 z (M, H), weight (H,), bias (1,); got {tuple(z.shape)} "
                         f"{z.dtype}, {tuple(weight.shape)}, {tuple(bias.shape)}")
    return _SoftplusHead.apply(z, weight, bias, float(beta))
