"""Small fixed encodings: real spherical harmonics for view directions, Fourier features for the background."""
from __future__ import annotations

import math

import torch

SH_DEGREE = 3
SH_DIMS = (SH_DEGREE + 1) ** 2   # 16


def spherical_harmonics(directions: torch.Tensor) -> torch.Tensor:
    """(N, 3) unit vectors -> (N, 16) real spherical harmonics of degrees 0-3, orthonormal on the sphere.

    Neuralangelo encodes view directions this way (recipe §1.4): smooth in the direction, so a colour network
    cannot memorise a photo's exact viewpoint.
    """
    x, y, z = directions.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack((
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y,
        0.48860251190291987 * z,
        -0.48860251190291987 * x,
        1.0925484305920792 * x * y,
        -1.0925484305920792 * y * z,
        0.94617469575755997 * zz - 0.31539156525251999,
        -1.0925484305920792 * x * z,
        0.54627421529603959 * (xx - yy),
        0.59004358992664352 * y * (yy - 3.0 * xx),
        2.8906114426405538 * x * y * z,
        0.45704579946446572 * y * (1.0 - 5.0 * zz),
        0.3731763325901154 * z * (5.0 * zz - 3.0),
        0.45704579946446572 * x * (1.0 - 5.0 * zz),
        1.4453057213202769 * z * (xx - yy),
        0.59004358992664352 * x * (3.0 * yy - xx),
    ), -1)


def fourier_features(values: torch.Tensor, frequencies: int) -> torch.Tensor:
    """(N, D) -> (N, D * (1 + 2 * frequencies)): the values, then sin and cos of 2^k * pi * values."""
    scales = (2.0 ** torch.arange(frequencies, device=values.device, dtype=values.dtype)) * math.pi
    angles = (values[:, :, None] * scales).flatten(1)
    return torch.cat((values, torch.sin(angles), torch.cos(angles)), -1)
