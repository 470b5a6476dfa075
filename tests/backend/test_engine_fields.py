"""The model and the renderer's pieces, checked against closed forms: derivatives, encodings, NeuS rendering."""
from __future__ import annotations

import math

import pytest
import torch

from carrara.backend.model.encodings import SH_DIMS, spherical_harmonics
from carrara.backend.model.gradients import tetrahedron_derivatives, tetrahedron_points
from carrara.backend.model.neural_surface import NeuralSurface, SurfaceModelConfig
from carrara.backend.model.color_field import ColorFieldConfig
from carrara.backend.model.background import BackgroundConfig
from carrara.backend.model.sdf_field import SdfFieldConfig
from carrara.backend.render.occupancy import OccupancyGrid
from carrara.backend.render.renderer import Renderer, SamplingConfig
from carrara.backend.render.sampling import neus_upsample, sample_pdf, uniform_in_unit_ball
from carrara.backend.render.volume import composite, neus_alpha

SMALL_GRID = dict(n_levels=4, features_per_level=2, log2_hashmap_size=12, base_resolution=8, max_resolution=32,
                  hidden=32)


def _model(**sdf) -> NeuralSurface:
    torch.manual_seed(0)
    sdf_config = SdfFieldConfig(**{**SMALL_GRID, **sdf})
    config = SurfaceModelConfig(sdf_config, ColorFieldConfig(feature_dim=sdf_config.feature_dim, hidden=16, layers=1),
                                None)
    return NeuralSurface(config)


def test_tetrahedron_gradient_and_laplacian_match_an_analytic_sdf():
    """Sphere of radius 0.6: grad = x / |x|, Laplacian = 2 / |x|; both converge at first order in eps."""
    x = torch.tensor([[0.3, -0.2, 0.5], [-0.7, 0.1, 0.05], [0.1, 0.9, -0.3]], dtype=torch.float64)
    r = x.norm(dim=-1)
    errors = []
    for eps in (4e-3, 2e-3, 1e-3):
        values = tetrahedron_points(x, eps).norm(dim=-1) - 0.6
        sdf, gradient, laplacian = tetrahedron_derivatives(values, eps)
        assert torch.allclose(sdf, r - 0.6)
        # The stencil's leading error is eps' * (H_yz, H_xz, H_xy); the Hessian of |x| is at most 1 / r.
        assert torch.all((gradient - x / r[:, None]).abs() <= eps / math.sqrt(3) / r[:, None])
        assert torch.allclose(laplacian, 2.0 / r, rtol=10 * eps)
        errors.append(float((gradient - x / r[:, None]).abs().max()))
    assert errors[1] == pytest.approx(errors[0] / 2, rel=0.05) and errors[2] == pytest.approx(errors[1] / 2, rel=0.05)
    taps = tetrahedron_points(x, 1e-3)[3:].view(4, 3, 3) - x
    assert torch.allclose(taps.norm(dim=-1), torch.full((4, 3), 1e-3, dtype=torch.float64))


def test_tetrahedron_on_a_quadratic_field_has_exactly_its_known_error():
    """f = x^2 + 2 y^2 - z^2 + xy: Laplacian exact; gradient = grad f + eps' (H_yz, H_xz, H_xy), nothing else."""
    x = torch.tensor([[0.2, -0.4, 0.3]], dtype=torch.float64)
    eps = 0.05
    p = tetrahedron_points(x, eps)
    values = p[:, 0] ** 2 + 2 * p[:, 1] ** 2 - p[:, 2] ** 2 + p[:, 0] * p[:, 1]
    _, gradient, laplacian = tetrahedron_derivatives(values, eps)
    exact = torch.tensor([[2 * 0.2 - 0.4, 4 * -0.4 + 0.2, -2 * 0.3]], dtype=torch.float64)
    stencil_error = eps / math.sqrt(3) * torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)   # H_xy = 1
    assert torch.allclose(gradient, exact + stencil_error, atol=1e-12)
    assert torch.allclose(laplacian, torch.tensor([2.0 + 4.0 - 2.0], dtype=torch.float64), atol=1e-10)


def test_geometric_init_is_a_sphere_and_inside_out_flips_it():
    points = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, -0.2, 0.1]])
    outward = _model().sdf_fn()(points)
    assert outward[0] < 0 < outward[1] and outward[2] < 0
    assert abs(float(_model().sdf_fn()(torch.tensor([[0.5, 0.0, 0.0]])))) < 0.1
    inward = _model(inside_out=True, init_radius=0.95).sdf_fn()(points)
    assert inward[0] > 0 and inward[2] > 0


def test_gradient_step_follows_the_annealed_level():
    config = SdfFieldConfig(**SMALL_GRID, grid_bound=1.0)
    steps = [config.gradient_step(level) for level in range(1, 5)]
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert steps[0] == pytest.approx(2.0 / 7.0 / 4.0, rel=1e-5)   # tcnn's level-0 scale is base - 1 = 7 cells


def test_spherical_harmonics_are_orthonormal():
    torch.manual_seed(1)
    dirs = torch.nn.functional.normalize(torch.randn(400000, 3, dtype=torch.float64), dim=-1)
    basis = spherical_harmonics(dirs)
    gram = 4 * math.pi * basis.T @ basis / dirs.shape[0]
    assert basis.shape[1] == SH_DIMS
    assert torch.allclose(gram, torch.eye(SH_DIMS, dtype=torch.float64), atol=0.03)


def test_neus_alpha_of_a_plane_crossing_is_the_cdf_drop():
    """A ray crossing a plane head-on: the whole interval's opacity is 1 - sigmoid(s * next) / sigmoid(s * prev)."""
    inv_s = torch.tensor(50.0)
    sdf = torch.tensor([0.01])
    alpha = neus_alpha(sdf, torch.tensor([-1.0]), torch.tensor([0.04]), inv_s)
    prev, nxt = torch.sigmoid(inv_s * 0.03), torch.sigmoid(inv_s * -0.01)
    assert float(alpha) == pytest.approx(float((prev - nxt) / prev), rel=1e-4)   # +1e-5 guard
    weights, remaining = composite(torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(weights, torch.tensor([[0.5, 0.25]])) and float(remaining) == pytest.approx(0.25, abs=1e-6)


def test_compositing_is_the_running_product_in_value_and_gradient():
    """composite() sums logs instead of multiplying (capturable in a CUDA graph): the same numbers and gradients,
    also where a sample is fully opaque."""
    alpha = torch.rand(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    alpha[0, 3], alpha[1, 0] = 1.0, 0.0
    colour = torch.rand(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours, product = alpha.clone().requires_grad_(), alpha.clone().requires_grad_()
    weights, remaining = composite(ours)
    transmittance = torch.cumprod(torch.cat((torch.ones_like(product[:, :1]), 1.0 - product + 1e-7), -1), -1)
    expected_weights, expected_remaining = product * transmittance[:, :-1], transmittance[:, -1]
    ((weights * colour).sum() + remaining.sum()).backward()
    ((expected_weights * colour).sum() + expected_remaining.sum()).backward()
    assert torch.allclose(weights, expected_weights, rtol=1e-9, atol=1e-12)
    assert torch.allclose(remaining, expected_remaining, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ours.grad, product.grad, rtol=1e-6, atol=1e-9)


def test_pdf_sampling_follows_the_weights():
    edges = torch.linspace(0, 1, 11)[None]
    weights = torch.zeros(1, 10)
    weights[0, 7] = 1.0
    samples = sample_pdf(edges, weights, 16, None)
    assert torch.all((samples >= 0.7) & (samples <= 0.8))
    assert torch.all(samples[:, 1:] >= samples[:, :-1])


def test_up_sampling_lands_at_the_zero_crossing():
    depths = torch.linspace(0.0, 2.0, 33)[None]
    sdf = 1.3 - depths                       # a plane at depth 1.3, approached head-on
    new = neus_upsample(depths, sdf, 8, inv_s=64.0)
    assert torch.all((new - 1.3).abs() < 0.1)


def test_occupancy_grid_marks_only_cells_near_the_surface():
    grid = OccupancyGrid(32, "cpu")
    grid.update(lambda p: p.norm(dim=-1) - 0.5, inv_s=1e4)
    near = torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.49, 0.02]])
    far = torch.tensor([[0.0, 0.0, 0.0], [0.95, 0.0, 0.0], [1.5, 0.0, 0.0]])
    assert grid.lookup(near).all() and not grid.lookup(far).any()
    assert 0.0 < grid.fraction < 0.3


def test_renderer_puts_the_surface_where_the_field_crosses_zero():
    """A sharp NeuS renders a ray through the initial sphere opaque, at the depth where the SDF changes sign."""
    model = _model()
    model.s_var.data.fill_(math.log(400.0))
    grid = OccupancyGrid(32, "cpu")
    grid.update(model.sdf_fn(), inv_s=400.0)
    renderer = Renderer(model, SamplingConfig(n_uniform=16, n_guided=16, n_fine=8, fine_rounds=2), grid)
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -3.0]])
    dirs = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.28, 1.0]]), dim=-1)  # 2nd: 0.81 off
    with torch.no_grad():
        out = renderer.render(origins, dirs, view_ids=None, cos_ratio=1.0, background_rgb=torch.ones(2, 3),
                              generator=None)
    t = torch.linspace(2.0, 3.0, 10001)
    crossing = t[(model.sdf_fn()(origins[0] + t[:, None] * dirs[0]) < 0).nonzero()[0, 0]]
    assert float(out.opacity[0]) > 0.95 and float(out.depth[0]) == pytest.approx(float(crossing), abs=0.02)
    assert float(out.opacity[1]) < 0.05                       # misses the object (still meets the unit sphere)
    assert torch.allclose(out.rgb[1], torch.ones(3), atol=0.05)   # so it shows the background colour
    assert out.sample_mask.all()


def test_background_model_fills_rays_that_leave_the_sphere():
    torch.manual_seed(0)
    sdf_config = SdfFieldConfig(**SMALL_GRID)
    config = SurfaceModelConfig(sdf_config, ColorFieldConfig(feature_dim=sdf_config.feature_dim, hidden=16, layers=1),
                                BackgroundConfig(hidden=16, layers=2, skip=1, frequencies=2, color_hidden=8))
    model = NeuralSurface(config)
    renderer = Renderer(model, SamplingConfig(n_uniform=8, n_guided=8, n_fine=4, fine_rounds=1, n_background=8))
    origins = torch.tensor([[0.0, 3.0, -3.0]])
    out = renderer.render(origins, torch.tensor([[0.0, 0.0, 1.0]]), view_ids=None, cos_ratio=1.0, background_rgb=None,
                          generator=torch.Generator().manual_seed(0))
    assert float(out.opacity.detach()) == 0.0 and float(out.rgb.detach().sum()) > 0.0   # a miss: background only
    out.rgb.sum().backward()
    assert model.background.density.weight.grad is not None


def test_ball_points_fill_the_unit_ball_evenly():
    points = uniform_in_unit_ball(200_000, torch.Generator().manual_seed(0), torch.device("cpu"))
    radius = points.norm(dim=1)
    assert points.shape == (200_000, 3) and float(radius.max()) <= 1.0
    # uniform in volume: a share r^3 of the points within radius r, and no preferred direction
    for r in (0.25, 0.5, 0.8):
        assert float((radius < r).float().mean()) == pytest.approx(r ** 3, abs=0.005)
    assert points.mean(0).abs().max() < 0.01


def test_appearance_codes_are_the_embeddings_rows_with_its_gradient():
    """The one-hot product (capturable in a CUDA graph) looks codes up exactly and trains them as the embedding."""
    config = SurfaceModelConfig(SdfFieldConfig(n_levels=2, features_per_level=2, log2_hashmap_size=10, hidden=16),
                                ColorFieldConfig(feature_dim=20, hidden=16, layers=1, appearance_dim=8), None,
                                appearance_images=7)
    model = NeuralSurface(config)
    torch.nn.init.normal_(model.appearance.weight)
    views = torch.tensor([3, 0, 6, 3, 3, 1])
    upstream = torch.randn(6, 8)
    (model.appearance_codes(views) * upstream).sum().backward()
    reference = model.appearance.weight.detach().clone().requires_grad_()
    (torch.nn.functional.embedding(views, reference) * upstream).sum().backward()
    assert torch.equal(model.appearance_codes(views), reference[views])
    assert torch.allclose(model.appearance.weight.grad, reference.grad, atol=1e-6)
    assert model.appearance_codes(None) is None
