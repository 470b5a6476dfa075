"""Loss terms (recipe §1.6) and the PSNR figure shown to the artist."""
from __future__ import annotations

import math

import torch


def rgb_l1(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 summed over the three channels, mean over rays: Neuralangelo's ``L1 * 3``."""
    return (rgb - target).abs().sum(-1).mean()


def eikonal(gradient: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (|grad f| - 1)^2 over the masked samples: keeps the field a distance."""
    value = (gradient.norm(dim=-1) - 1.0) ** 2
    return (value * mask).sum() / mask.sum().clamp_min(1)


def curvature(laplacian: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |Laplacian f| over the masked samples: Neuralangelo's smoothness prior on mean curvature."""
    return (laplacian.abs() * mask).sum() / mask.sum().clamp_min(1)


def mask_bce(opacity: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the rendered opacity against the photo's alpha.

    Written out rather than F.binary_cross_entropy, which raises on NaN: a diverged step must reach the NaN guard.
    """
    o = opacity.clamp(1e-4, 1.0 - 1e-4)
    return -(alpha * torch.log(o) + (1.0 - alpha) * torch.log1p(-o)).mean()


def psnr(rgb: torch.Tensor, target: torch.Tensor) -> float:
    mse = float(((rgb - target) ** 2).mean())
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)
