"""GPU-only checks of the engine (skipped without CUDA): the same model on both devices, the plan's estimate, the
delayed NaN guard. Run on the GPU machine with ``pytest tests/backend/test_training_gpu.py``."""
from __future__ import annotations

import copy

import pytest
import torch

from carrara.backend.data.dataset import load_dataset
from carrara.backend.render.occupancy import OccupancyGrid
from carrara.backend.data.rays import camera_rays
from carrara.backend.render.renderer import Renderer
from carrara.backend.train.memory_plan import plan_memory
from carrara.backend.train.presets import preset
from carrara.backend.train.settings import build_settings
from carrara.backend.train.trainer import GUARD_EVERY_CUDA, Trainer
from carrara.shared.sphere import BoundingSphere
from engine_scenes import cached_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    scene = cached_scene(tmp_path_factory)
    return load_dataset(scene.folder, sphere=BoundingSphere(scene.sphere_center, scene.sphere_radius))


def _trainer(dataset, name: str = "ci", device: str = "cuda", plan=None) -> Trainer:
    settings = build_settings(preset(name), scene_type="object", use_alpha=True, n_views=len(dataset.views),
                              plan=plan, mixed_precision=device == "cuda")
    return Trainer(dataset, settings, device=device, image_budget=plan.image_cache_bytes if plan else 1 << 28)


def test_the_trained_field_is_the_same_on_both_devices(dataset):
    """Triton on CUDA and the PyTorch reference on the CPU give the same SDF and nearly the same render."""
    gpu = _trainer(dataset)
    for _ in range(30):
        gpu.step()
    gpu.prepare_for_extraction()
    cpu_model = copy.deepcopy(gpu.model).cpu()
    points = torch.rand(4096, 3) * 2 - 1
    assert torch.allclose(gpu.model.sdf_fn()(points.cuda()).cpu(), cpu_model.sdf_fn()(points), atol=1e-5)
    batch = gpu.validation_images.fixed_sample(256, 0)
    origins, dirs = camera_rays(gpu.c2w[batch.view], gpu.intrinsics[batch.view], batch.pixels)
    on_gpu = gpu.renderer.render_batches(origins, dirs, None, torch.ones_like(batch.rgb), 256).cpu()
    grid = OccupancyGrid(gpu.occupancy.resolution, "cpu")
    grid.load_state_dict(gpu.occupancy.state_dict())
    on_cpu = Renderer(cpu_model, gpu.settings.sampling, grid).render_batches(origins.cpu(), dirs.cpu(), None,
                                                                            torch.ones(256, 3), 256)
    assert (on_gpu - on_cpu).abs().mean() < 2e-2          # bf16 colour MLP on the GPU, fp32 on the CPU


@pytest.mark.parametrize("name", ["preview", "standard"])
def test_measured_peak_memory_stays_within_the_plan(dataset, name):
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    plan = plan_memory(preset(name), free, with_background=False)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    trainer = _trainer(dataset, name, plan=plan)
    trainer.iteration = trainer.schedule.all_levels_at()
    for _ in range(3):
        trainer.step()
    torch.cuda.synchronize()
    photos = trainer.images.resident_bytes + trainer.validation_images.resident_bytes
    assert torch.cuda.max_memory_allocated() - before <= plan.estimated_bytes + photos


def test_the_delayed_guard_rolls_back_within_its_window(dataset):
    trainer = _trainer(dataset)
    for _ in range(GUARD_EVERY_CUDA):
        trainer.step()
    trainer.take_snapshot()
    with torch.no_grad():
        trainer.model.sdf_field.encoding.table.fill_(float("nan"))
    rolled = [trainer.step().rolled_back for _ in range(GUARD_EVERY_CUDA)]
    assert any(rolled) and trainer.lr_scale == 0.5
    assert torch.isfinite(trainer.model.sdf_field.encoding.table).all()


def test_the_captured_step_trains_like_the_eager_one_across_level_changes(dataset):
    """CUDA-graph replays compute what eager steps compute, through re-captures when the hash levels change."""
    settings = _trainer(dataset).settings
    runs = {}
    for graph in (False, True):
        trainer = Trainer(dataset, settings, device="cuda", image_budget=1 << 28, cuda_graph=graph)
        losses = [trainer.step().loss for _ in range(40)]
        runs[graph] = (losses, trainer)
    (eager, eager_trainer), (graphed, graph_trainer) = runs[False], runs[True]
    assert graph_trainer.graph.captures >= 2                # 40 ci steps cross at least one level change
    assert eager[:1] == graphed[:1]                         # the first step of a key runs eagerly
    # Atomics in the encoding's backward make even two eager runs drift apart entry by entry (a replay draws its
    # random numbers apart from eager steps, too): the training, not the bits, must agree.
    assert max(abs(a - b) / abs(a) for a, b in zip(eager, graphed)) < 0.05
    table, replayed = eager_trainer.model.sdf_field.encoding.table, graph_trainer.model.sdf_field.encoding.table
    assert abs(float(replayed.norm() / table.norm()) - 1.0) < 0.05


def test_a_captured_run_resumes_from_its_checkpoint(dataset):
    trainer = _trainer(dataset)
    for _ in range(12):
        trainer.step()
    state = trainer.state_dict()
    assert all(isinstance(group["lr"], float) for group in state["optimizer"]["param_groups"])
    resumed = _trainer(dataset)
    resumed.load_state_dict(state)
    stats = [resumed.step() for _ in range(4)]
    assert resumed.iteration == 16 and all(torch.isfinite(s.loss_tensor) for s in stats)
    assert all(isinstance(group["lr"], torch.Tensor) for group in resumed.optimizer.param_groups)


def test_the_fused_softplus_head_is_pytorchs_softplus_and_head(dataset):
    trainer = _trainer(dataset, "preview")
    for _ in range(20):
        trainer.step()
    field = trainer.model.sdf_field
    points = (torch.rand(50_000, 3, device="cuda") * 2 - 1) * 0.8
    results = []
    for fused in (True, False):
        field.fused_head = fused
        field.zero_grad(set_to_none=True)
        out = field.with_derivatives(points, trainer.model.gradient_step, trainer.model.active_levels)
        (out.sdf.sum() + out.gradient.norm(dim=-1).sum() + 1e-3 * out.laplacian.abs().sum()).backward()
        results.append((out, {name: p.grad.clone() for name, p in field.named_parameters() if p.grad is not None}))
    (fused, fused_grads), (plain, plain_grads) = results
    assert torch.allclose(fused.sdf, plain.sdf, atol=1e-6)
    assert (fused.gradient - plain.gradient).norm(dim=-1).max() < 1e-3
    assert (fused.laplacian - plain.laplacian).abs().mean() < 5e-2 * plain.laplacian.abs().mean() + 1e-2
    assert fused_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        assert (fused_grads[name] - grad).norm() <= 1e-2 * grad.norm() + 1e-6, name


def test_a_scene_with_appearance_codes_and_a_background_network_is_captured(dataset):
    """Outdoor captures train per-photo codes and the NeRF++ background: both must stay inside the graph."""
    settings = build_settings(preset("ci"), scene_type="outdoor", use_alpha=False, n_views=len(dataset.views),
                              plan=None, mixed_precision=True)
    trainer = Trainer(dataset, settings, device="cuda", image_budget=1 << 28)
    stats = [trainer.step() for _ in range(4)]
    assert trainer.model.appearance is not None and trainer.model.background is not None
    assert trainer.graph.unavailable is None and trainer.graph.captures >= 1
    assert all(torch.isfinite(s.loss_tensor) for s in stats)
