"""NeuS volume rendering (recipe §1.7): opacity from SDF values, cos annealing, alpha compositing. All fp32."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def annealed_cos(true_cos: torch.Tensor, ratio: float | torch.Tensor) -> torch.Tensor:
    """NeuS's cos annealing: early on (ratio 0) every direction counts as approaching the surface a little, so
    back-facing samples still receive gradients; at ratio 1 it is the true cos, clipped to <= 0."""
    return -(F.relu(-true_cos * 0.5 + 0.5) * (1.0 - ratio) + F.relu(-true_cos) * ratio)


def neus_alpha(sdf: torch.Tensor, cos: torch.Tensor, dists: torch.Tensor, inv_s: torch.Tensor) -> torch.Tensor:
    """Discrete NeuS opacity of intervals of length ``dists`` centred on samples with SDF ``sdf``.

    The SDF at the interval's ends is estimated linearly (sdf -+ cos * dist / 2); the opacity is the drop of the
    logistic CDF across the interval relative to its start.
    """
    prev_cdf = torch.sigmoid((sdf - cos * dists * 0.5) * inv_s)
    next_cdf = torch.sigmoid((sdf + cos * dists * 0.5) * inv_s)
    return ((prev_cdf - next_cdf) / (prev_cdf + 1e-5)).clamp(0.0, 1.0)


def composite(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, N) opacities -> (R, N) weights alpha_i * prod_{j<i} (1 - alpha_j) and the (R,) light left after them."""
    # The running product as exp of a running sum of logs: cumprod's backward asks the host whether any factor is
    # zero, which a captured CUDA graph (train/step_graph.py) cannot do; the factors here are never below 1e-7.
    log_factors = torch.log1p(1e-7 - alpha)
    transmittance = torch.exp(torch.cumsum(torch.cat((torch.zeros_like(alpha[:, :1]), log_factors), -1), -1))
    return alpha * transmittance[:, :-1], transmittance[:, -1]
