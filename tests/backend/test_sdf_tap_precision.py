"""The SDF's tap derivatives on bf16 tensor cores (``with_derivatives(reduced_precision=True)``) keep fp32's
precision: gradient, Laplacian and parameter gradients measured against an fp64 evaluation of the same field, at
the finest level's step (the hard case), next to today's fp32 path and a naive variant that rounds each row to
bf16, which the same checks reject.

The fp64 reference evaluates the network at the same fp32 tap positions (the grid rounds positions to fp32 in
every implementation), so it measures the arithmetic alone.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from carrara.backend.model.gradients import tetrahedron_derivatives, tetrahedron_points
from carrara.backend.model.hashgrid import encode_reference
from carrara.backend.model.sdf_field import SOFTPLUS_BETA, SdfField, SdfFieldConfig
from carrara.backend.model.tap_differences import tap_difference_product
from carrara.backend.train import losses

CONFIG = SdfFieldConfig(n_levels=8, features_per_level=4, log2_hashmap_size=14, base_resolution=32,
                        max_resolution=2048, hidden=128, encoding="torch")
LEVELS = CONFIG.n_levels
EPS = CONFIG.gradient_step(LEVELS)      # the finest level's step: eps' = 1.5e-4, as at the presets' 2048
POINTS = 2048
#: reduced precision may err this much more than fp32 (relative to fp64) on the gradient and Laplacian
FP32_FACTOR = 3.0


def _field() -> SdfField:
    """A trained-looking field: hash values of a realistic scale, and hash inputs the hidden layer listens to
    (geometric initialisation starts them at zero, which would leave the grid out of every derivative)."""
    torch.manual_seed(0)
    field = SdfField(CONFIG)
    with torch.no_grad():
        field.encoding.table.uniform_(-1e-2, 1e-2)
        direction = field.hidden.parametrizations.weight.original1        # weight norm's v
        direction[:, 3:] = torch.randn_like(direction[:, 3:]) * math.sqrt(2.0 / CONFIG.hidden)
    return field


def _points() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(POINTS, 3, generator=generator) * 2.0 - 1.0) * 0.7


def _fp64_reference(field64: SdfField, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    points = tetrahedron_points(x, EPS)     # fp32 taps, as the field sees them
    grid = encode_reference(field64.encoding.config.to_unit_cube(points), field64.encoding.table,
                            field64.encoding.config, LEVELS)
    h = F.softplus(field64.hidden(torch.cat((points.double(), grid), -1)), beta=SOFTPLUS_BETA)
    return tetrahedron_derivatives(field64.head(h).squeeze(-1), EPS)


def _naive_bf16(field: SdfField, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first layer with each row rounded to bf16, as autocast would run it."""
    points = tetrahedron_points(x, EPS)
    grid = field.encoding(field.encoding.config.to_unit_cube(points), LEVELS)
    rows = torch.cat((points, grid), -1).bfloat16()
    z = torch.mm(rows.float(), field.hidden.weight.bfloat16().float().t()) + field.hidden.bias
    values = field.head(F.softplus(z, beta=SOFTPLUS_BETA)).squeeze(-1)
    return tetrahedron_derivatives(values, EPS)


def _loss(sdf: torch.Tensor, gradient: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
    """Eikonal, curvature (at the presets' weight) and a surface term, as a training step combines them."""
    mask = torch.ones_like(sdf)
    return losses.eikonal(gradient, mask) + 5e-4 * losses.curvature(laplacian, mask) + sdf.abs().mean()


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.detach().double() - reference.detach()).norm() / reference.detach().norm())


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, float]]:
    """Relative errors against fp64 of each variant: 'gradient', 'laplacian' and 'grad:<parameter>'."""
    field, x = _field(), _points()
    field64 = copy.deepcopy(field).double()
    sdf, gradient, laplacian = _fp64_reference(field64, x)
    _loss(sdf, gradient, laplacian).backward()
    reference = {"gradient": gradient, "laplacian": laplacian}
    reference.update({f"grad:{name}": p.grad for name, p in field64.named_parameters() if p.grad is not None})

    def fp32(reduced: bool):
        result = field.with_derivatives(x, EPS, LEVELS, reduced_precision=reduced)
        return result.sdf, result.gradient, result.laplacian

    errors = {}
    for variant, run in (("fp32", lambda: fp32(False)), ("reduced", lambda: fp32(True)),
                         ("naive", lambda: _naive_bf16(field, x))):
        field.zero_grad()
        sdf, gradient, laplacian = run()
        _loss(sdf, gradient, laplacian).backward()
        found = {"gradient": gradient, "laplacian": laplacian}
        found.update({f"grad:{name}": p.grad for name, p in field.named_parameters() if p.grad is not None})
        errors[variant] = {key: _relative_error(found[key], value) for key, value in reference.items()}
    return errors


def _keeps_fp32_precision(errors: dict[str, float], fp32: dict[str, float]) -> bool:
    return all(errors[key] <= FP32_FACTOR * fp32[key] for key in ("gradient", "laplacian"))


def test_reduced_precision_taps_match_fp32_accuracy_where_bf16_rows_do_not(measured):
    fp32, reduced, naive = measured["fp32"], measured["reduced"], measured["naive"]
    assert fp32["gradient"] < 1e-3 and fp32["laplacian"] < 1e-2      # the finest step is within fp32's reach
    assert _keeps_fp32_precision(reduced, fp32), (reduced, fp32)
    assert not _keeps_fp32_precision(naive, fp32), (naive, fp32)
    assert naive["gradient"] > 100 * reduced["gradient"] and naive["laplacian"] > 100 * reduced["laplacian"]


def test_reduced_precision_parameter_gradients_match_fp64(measured):
    """fp32 itself errs by a few % on the table: the table sums the taps' and centres' large +-1/eps^2 feature
    gradients in fp32, in the encoding's backward, which both paths share. The bf16 GEMMs of the reduced backward
    add a ~2e-3 relative error, never the 1/eps-amplified noise of bf16 rows."""
    fp32, reduced, naive = measured["fp32"], measured["reduced"], measured["naive"]
    parameters = [key for key in fp32 if key.startswith("grad:")]
    assert {"grad:encoding.table", "grad:hidden.parametrizations.weight.original1"} <= set(parameters)
    for key in parameters:
        assert fp32[key] < 5e-2, (key, fp32[key])
        assert reduced[key] <= 1.5 * fp32[key] + 5e-3, (key, reduced[key], fp32[key])
    for key in ("grad:encoding.table", "grad:hidden.parametrizations.weight.original1"):
        assert naive[key] > 10 * (1.5 * fp32[key] + 5e-3), (key, naive[key], fp32[key])


def test_tap_difference_product_is_fp32_accurate_on_bf16_operands():
    generator = torch.Generator().manual_seed(2)
    differences = torch.randn(300, 37, generator=generator) * 1e-4      # K = 37: padded to 40
    weight = torch.randn(64, 37, generator=generator, requires_grad=True)
    differences.requires_grad_(True)
    product = tap_difference_product(differences, weight)
    exact = differences.double() @ weight.double().t()
    assert product.dtype == torch.float32 and product.shape == (300, 64)
    assert _relative_error(product, exact) < 2e-5              # a bf16 product of rows errs ~4e-3
    upstream = torch.randn(300, 64, generator=generator)
    product.backward(upstream)
    assert _relative_error(differences.grad, upstream.double() @ weight.double()) < 1e-2
    assert _relative_error(weight.grad, upstream.double().t() @ differences.double()) < 1e-2


def test_exact_path_is_unchanged():
    """reduced_precision=False is the network as it always ran: one fp32 pass over the centres and taps."""
    field, x = _field(), _points()[:256]
    result = field.with_derivatives(x, EPS, LEVELS)
    points = tetrahedron_points(x, EPS)
    grid = field.encoding(field.encoding.config.to_unit_cube(points), LEVELS)
    h = F.softplus(field.hidden(torch.cat((points, grid), -1)), beta=SOFTPLUS_BETA)
    sdf, gradient, laplacian = tetrahedron_derivatives(field.head(h).squeeze(-1), EPS)
    feature = torch.cat((F.softplus(field.feature_layer(h[:256]), beta=SOFTPLUS_BETA), grid[:256]), -1)
    for found, expected in ((result.sdf, sdf), (result.gradient, gradient), (result.laplacian, laplacian),
                            (result.feature, feature)):
        assert torch.equal(found, expected)


def test_reduced_precision_feature_is_the_bf16_feature_layer():
    """The geometry feature feeds the bf16 colour network, so its layer may run in bf16: close, and trainable."""
    field, x = _field(), _points()[:256]
    exact = field.with_derivatives(x, EPS, LEVELS)
    reduced = field.with_derivatives(x, EPS, LEVELS, reduced_precision=True)
    assert torch.allclose(reduced.sdf, exact.sdf, rtol=0.0, atol=1e-6)
    assert 0.0 < _relative_error(reduced.feature, exact.feature) < 1e-2
    reduced.feature.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.feature_layer.parameters())
