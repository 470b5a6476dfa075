"""The inputs a captured training step reads: fixed buffers that each step's values are copied into in place.
(The capture itself needs CUDA: tests/backend/test_training_gpu.py.)"""
from __future__ import annotations

import torch

from carrara.backend.train.step_graph import StepInputs


def _inputs(seed: int, alpha: bool) -> StepInputs:
    g = torch.Generator().manual_seed(seed)
    return StepInputs(view=torch.randint(0, 5, (8,), generator=g), pixels=torch.rand(8, 2, generator=g),
                      rgb=torch.rand(8, 3, generator=g), alpha=torch.rand(8, generator=g) if alpha else None,
                      cos_ratio=0.25 * seed, curvature_weight=1e-4 * seed)


def test_buffers_hold_the_values_and_numbers_become_tensors():
    first = _inputs(1, alpha=True)
    buffers = first.as_buffers(torch.device("cpu"))
    assert torch.equal(buffers.rgb, first.rgb) and buffers.rgb.data_ptr() != first.rgb.data_ptr()
    assert isinstance(buffers.cos_ratio, torch.Tensor) and buffers.cos_ratio.dim() == 0
    assert float(buffers.cos_ratio) == 0.25 and abs(float(buffers.curvature_weight) - 1e-4) < 1e-9


def test_a_later_step_is_copied_into_the_same_storage():
    buffers = _inputs(1, alpha=False).as_buffers(torch.device("cpu"))
    pointers = {name: getattr(buffers, name).data_ptr() for name in ("view", "pixels", "rgb", "cos_ratio")}
    second = _inputs(2, alpha=False)
    second.copy_into(buffers)
    assert buffers.alpha is None
    assert torch.equal(buffers.view, second.view) and torch.equal(buffers.pixels, second.pixels)
    assert float(buffers.cos_ratio) == 0.5 and abs(float(buffers.curvature_weight) - 2e-4) < 1e-9
    assert {name: getattr(buffers, name).data_ptr() for name in pointers} == pointers
