"""Numerical SDF derivatives on a regular tetrahedron: Neuralangelo's 4-tap stencil (recipe §1.5).

Four extra SDF values at ``x + eps' * k_i`` with k_i the corners (+-1, +-1, +-1) of a regular tetrahedron give

    gradient  = sum_i k_i f_i / (4 eps')                       (sum_i k_i k_i^T = 4 I, sum_i k_i = 0)
    laplacian = (sum_i f_i / 2 - 2 f(x)) / eps'^2              (sum_i f_i = 4 f + 2 eps'^2 tr H + O(eps'^4))

with eps' = eps / sqrt(3) (each tap lies ``eps`` from x). Unlike autograd's analytic gradient, the step ``eps`` is
tied to the finest active hash level, so early in training normals see a smooth field and the gradients reach
neighbouring hash cells (Neuralangelo's key idea); only first-order autograd runs through the encoding.

The helpers are split so that a field can run all 5N points through one network call (fast on a GPU) and the
analytic-SDF tests can check the stencil without any network.
"""
from __future__ import annotations

import functools
import math

import torch

TETRAHEDRON = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
TAPS = 4


@functools.cache
def _corners(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """TETRAHEDRON on ``device``, copied there once: a captured CUDA graph may not copy from host memory."""
    return TETRAHEDRON.to(device, dtype)


def tetrahedron_points(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(5N, 3): the N points themselves, then their four taps, tap-major (rows N*(1+i) .. N*(2+i) are tap i)."""
    step = eps / math.sqrt(3.0)
    taps = x[None, :, :] + step * _corners(x.device, x.dtype)[:, None, :]
    return torch.cat((x, taps.reshape(-1, 3)), 0)


def tetrahedron_derivatives(values: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the (5N,) SDF values at ``tetrahedron_points``: f(x) (N,), gradient (N, 3), Laplacian (N,)."""
    n = values.shape[0] // (1 + TAPS)
    centre = values[:n]
    taps = values[n:].view(TAPS, n)
    step = eps / math.sqrt(3.0)
    gradient = torch.einsum("tn,tc->nc", taps, _corners(values.device, values.dtype)) / (TAPS * step)
    laplacian = (taps.sum(0) * 0.5 - 2.0 * centre) / (step * step)
    return centre, gradient, laplacian
