"""The training loop's state and one step of it; the CLI and the server's reconstruct job both drive it.

``Trainer.step()`` is one iteration: schedule, occupancy refresh, a ray batch, NeuS rendering, losses, AdamW.
On a GPU everything after the ray batch is one captured CUDA graph (``step_graph.py``), replayed each step.
``Trainer.train()`` repeats it with validation and plateau detection, calling back after each step so the caller
reports progress, streams previews, writes checkpoints and honours cancel requests.

NaN guard: a non-finite loss or gradient (checked every step on the CPU, every GUARD_EVERY_CUDA steps on a GPU, to
avoid a host sync per step) rolls the model, optimiser and occupancy grid back to the last snapshot (in host memory:
taken at the start, every ``checkpoint_every`` iterations and with every checkpoint written) and halves the
learning rate, instead of ending the run; MAX_ROLLBACKS without reaching a new snapshot end it with
TrainingDiverged, the last good checkpoint intact.

Resume: ``state_dict()`` holds everything that decides the next step (weights, AdamW moments, occupancy grid,
iteration, learning-rate scale, both random generators), so a loaded trainer's next step is bit-identical on the CPU.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ...shared.sphere import BoundingSphere
from ..data.dataset import PosedDataset
from ..data.images import ImageStore
from ..data.rays import camera_rays
from ..model.neural_surface import NeuralSurface
from ..profiling import step_range
from ..render.occupancy import OccupancyGrid
from ..render.renderer import Renderer
from ..render.sampling import uniform_in_unit_ball
from . import losses
from .checkpoint import CheckpointError, to_cpu
from .distributed import Distributed
from .presets import PLATEAU_MIN_GAIN_DB
from .schedules import Schedule, per_level_scale
from .settings import TrainSettings
from .step_graph import StepGraph, StepInputs

STATE_FORMAT = 1
GUARD_EVERY_CUDA = 8
MAX_ROLLBACKS = 5
LR_BACKOFF = 0.5
VALIDATION_SEED = 20240607
VALIDATION_BATCH = 4096


class TrainingDiverged(RuntimeError):
    """The loss kept turning NaN even after rolling back with smaller learning rates."""


@dataclass
class StepStats:
    iteration: int                          # iterations completed
    loss_tensor: torch.Tensor
    mse_tensor: torch.Tensor                # of the batch's colours: a training PSNR before validation runs
    rolled_back: bool = False
    psnr_validation: float | None = None

    @property
    def loss(self) -> float:
        return float(self.loss_tensor)

    @property
    def psnr_train(self) -> float:
        mse = float(self.mse_tensor)
        return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


class Trainer:
    def __init__(self, dataset: PosedDataset, settings: TrainSettings, *, device: str | torch.device = "cpu",
                 image_budget: int = 0, host_budget: int | None = None, seed: int = 0,
                 distributed: Distributed | None = None, log: Callable[[str, str], None] | None = None,
                 cuda_graph: bool = True, fused_sdf_head: bool = True):
        """``cuda_graph`` and ``fused_sdf_head`` (GPU only) change how a step is computed, not what: benchmarks
        turn them off for their baselines."""
        self.dataset, self.settings = dataset, settings
        self.device = torch.device(device)
        self.dist = distributed or Distributed()
        self._log = log or (lambda line, level="info": None)
        with torch.random.fork_rng(devices=[]):     # the same weights for a seed, without touching global RNG
            torch.manual_seed(seed)
            self.model = NeuralSurface(settings.model).to(self.device)
        self.model.sdf_field.fused_head = fused_sdf_head
        self.dist.broadcast_module(self.model)
        self.occupancy = OccupancyGrid(settings.occupancy_resolution, self.device)
        on_cuda = self.device.type == "cuda"
        self.renderer = Renderer(self.model, settings.sampling, self.occupancy,
                                 mixed_precision=settings.mixed_precision)
        self.optimizer = self._make_optimizer()
        grid = settings.model.sdf
        self.schedule = Schedule(settings.schedule, settings.iterations, grid.n_levels,
                                 per_level_scale(grid.base_resolution, grid.max_resolution, grid.n_levels),
                                 settings.losses.curvature)
        self.images = ImageStore(dataset.views, dataset.train, device=self.device, use_alpha=dataset.use_alpha,
                                 device_budget=image_budget, host_budget=host_budget, seed=seed)
        self.validation_images = ImageStore(dataset.views, dataset.validation, device=self.device,
                                            use_alpha=dataset.use_alpha, device_budget=image_budget,
                                            host_budget=host_budget)
        self.c2w = torch.as_tensor(np.stack([v.c2w[:3] for v in dataset.views]), dtype=torch.float32,
                                   device=self.device)
        self.intrinsics = torch.as_tensor(np.array([v.intrinsics for v in dataset.views]), dtype=torch.float32,
                                          device=self.device)
        self.pixel_generator = torch.Generator().manual_seed(seed * 1000 + self.dist.rank)
        self.render_generator = torch.Generator(device=self.device).manual_seed(seed * 1000 + 17 + self.dist.rank)
        self.iteration = 0
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.best_psnr = float("-inf")
        self.validations_since_best = 0
        self._bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self.graph = (StepGraph(self._compute, self.device, (self.render_generator,), self._log)
                      if cuda_graph and on_cuda and not self.dist.enabled else None)
        self._snapshot: dict[str, Any] | None = None
        self.take_snapshot()

    # --- construction ---------------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.settings.optim
        table = self.model.sdf_field.encoding.table
        special = {id(table), id(self.model.s_var)}
        mlps = [p for p in self.model.parameters() if id(p) not in special]
        groups = [
            {"params": [table], "lr": o.lr_hash, "base_lr": o.lr_hash, "weight_decay": o.weight_decay_hash,
             "eps": o.eps_hash},
            {"params": [self.model.s_var], "lr": o.lr_s, "base_lr": o.lr_s, "weight_decay": 0.0},
            {"params": mlps, "lr": o.lr, "base_lr": o.lr, "weight_decay": o.weight_decay},
        ]
        on_cuda = self.device.type == "cuda"
        # capturable: its step counts stay on the GPU and learning rates may be tensors, as a graph needs
        optimizer = torch.optim.AdamW(groups, betas=o.betas, fused=on_cuda, capturable=on_cuda)
        self._learning_rates_on_device(optimizer)
        return optimizer

    def _learning_rates_on_device(self, optimizer: torch.optim.Optimizer) -> None:
        """On a GPU each group's learning rate is a tensor the schedule fills in place (a captured step reads it)."""
        if self.device.type == "cuda":
            for group in optimizer.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=self.device)

    # --- the step ---------------------------------------------------------------------------------------------
    def _apply_schedule(self, iteration: int) -> None:
        self.model.set_levels(self.schedule.active_levels(iteration), self.schedule.annealed_levels(iteration))
        factor = self.schedule.lr_factor(iteration) * self.lr_scale
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(group["base_lr"] * factor)
            else:
                group["lr"] = group["base_lr"] * factor

    def step(self) -> StepStats:
        """One training iteration; returns its (lazily read) figures."""
        it = self.iteration
        s = self.settings
        self._apply_schedule(it)
        if it % s.occupancy_every == 0:
            with step_range("occupancy_update"):
                self.occupancy.update(self.model.sdf_fn(), float(self.model.inv_s().detach()))
        with step_range("ray_batch"):
            batch = self.images.sample(self.dist.share(s.rays_per_iter), self.pixel_generator)
        inputs = StepInputs(batch.view, batch.pixels, batch.rgb, batch.alpha, self.schedule.cos_ratio(it),
                            self.schedule.curvature(it))
        if self.graph is None:
            figures = self._compute(inputs)
        else:
            key = (self.model.active_levels, self.model.annealed_levels)
            figures = self.graph.run(key, inputs).clone()
        stats = StepStats(it + 1, figures[0], figures[1])
        if self._guard_due(it) and self.dist.agree(bool(self._bad), self.device):
            self._roll_back(f"the loss or its gradient became NaN/infinite at iteration {it + 1}")
            stats.rolled_back = True
            return stats
        self.iteration = it + 1
        return stats

    def _compute(self, inputs: StepInputs) -> torch.Tensor:
        """Rays, rendering, losses, backward, the NaN check and the optimizer: the part of a step a GPU captures.

        Returns (loss, colour MSE). Everything it reads that changes between steps is in ``inputs`` or a tensor
        updated in place (weights, learning rates, the occupancy grid), and it keeps no Python state.
        """
        s, w = self.settings, self.settings.losses
        with step_range("ray_batch"):
            origins, directions = camera_rays(self.c2w[inputs.view], self.intrinsics[inputs.view], inputs.pixels)
            target, background = inputs.rgb, None
            if s.background == "random":
                background = torch.rand((target.shape[0], 3), generator=self.render_generator, device=self.device)
            if inputs.alpha is not None and background is not None:
                target = inputs.rgb * inputs.alpha[:, None] + background * (1.0 - inputs.alpha[:, None])
        with step_range("render"):
            result = self.renderer.render(origins, directions, view_ids=inputs.view, cos_ratio=inputs.cos_ratio,
                                          background_rgb=background, generator=self.render_generator)
        mask = result.sample_mask.float()
        eikonal_gradient, eikonal_mask = result.gradient, mask
        ball_points = int(w.eikonal_ball_points_per_ray * target.shape[0])
        if ball_points:
            with step_range("eikonal_ball"):
                ball = self.model.sdf_field.with_derivatives(
                    uniform_in_unit_ball(ball_points, self.render_generator, self.device), self.model.gradient_step,
                    self.model.active_levels)
                eikonal_gradient = torch.cat((eikonal_gradient, ball.gradient))
                eikonal_mask = torch.cat((eikonal_mask, mask.new_ones(ball_points)))
        with step_range("losses"):
            terms = {"rgb": losses.rgb_l1(result.rgb, target),
                     "eikonal": losses.eikonal(eikonal_gradient, eikonal_mask),
                     "curvature": losses.curvature(result.laplacian, mask)}
            total = (w.rgb * terms["rgb"] + w.eikonal * terms["eikonal"]
                     + inputs.curvature_weight * terms["curvature"])
            if s.use_mask and inputs.alpha is not None and w.mask > 0:
                terms["mask"] = losses.mask_bce(result.opacity, inputs.alpha)
                total = total + w.mask * terms["mask"]
        with step_range("backward_call"):
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
        with step_range("gradient_check"):
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            self.dist.average_gradients(params)
            grads = [p.grad for p in params if p.grad is not None]
            norms = torch.stack(torch._foreach_norm(grads)) if grads else total.new_zeros(1)
            self._bad |= ~torch.isfinite(total) | ~torch.isfinite(norms).all()
            mse = ((result.rgb.detach() - target) ** 2).mean()
        # A broken step is stepped too: the guard rolls the weights and moments back to the snapshot.
        with step_range("optimizer"):
            self.optimizer.step()
        return torch.stack((total.detach(), mse))

    def _guard_due(self, iteration: int) -> bool:
        return self.device.type != "cuda" or (iteration + 1) % GUARD_EVERY_CUDA == 0

    def _roll_back(self, reason: str) -> None:
        count = self.rollbacks + 1
        if count > MAX_ROLLBACKS:
            raise TrainingDiverged(f"{reason}; {MAX_ROLLBACKS} rollbacks with ever smaller learning rates did not "
                                   "help (check the photos, poses and bounding sphere); the last good checkpoint "
                                   "is intact")
        lr_scale = self.lr_scale * LR_BACKOFF
        self._load_training_state(self._snapshot, restore_rng=False)
        self.lr_scale, self.rollbacks = lr_scale, count
        self._bad.zero_()
        self._log(f"{reason}: rolled back to iteration {self.iteration} and lowered the learning rate to "
                  f"x{lr_scale:g}", "warning")

    # --- validation and the loop ----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """PSNR on a fixed set of pixels of the held-out photos (white behind masked photos)."""
        # Held-out photos have no trained appearance code: the zero (average) code renders them.
        return self._fixed_pixels_psnr(self.validation_images, own_codes=False)

    @torch.no_grad()
    def training_view_psnr(self) -> float:
        """PSNR on a fixed set of pixels of the training photos, each with its own appearance code. Beside
        ``validate()`` it tells a model that fits its photos but not new views (this far above) from one that
        has not fit its photos yet (both low). Streamed photos: the pixels come from the chunk in memory."""
        return self._fixed_pixels_psnr(self.images, own_codes=True)

    def _fixed_pixels_psnr(self, store: ImageStore, *, own_codes: bool) -> float:
        batch = store.fixed_sample(self.settings.validation_rays, VALIDATION_SEED)
        self.prepare_for_extraction()
        origins, directions = camera_rays(self.c2w[batch.view], self.intrinsics[batch.view], batch.pixels)
        target, background = batch.rgb, None
        if batch.alpha is not None and self.settings.background == "random":
            background = torch.ones_like(batch.rgb)
            target = batch.rgb * batch.alpha[:, None] + (1.0 - batch.alpha[:, None])
        rgb = self.renderer.render_batches(origins, directions, batch.view if own_codes else None, background,
                                           VALIDATION_BATCH)
        return losses.psnr(rgb, target)

    def plateaued(self, psnr: float) -> bool:
        """True once validation PSNR has not gained PLATEAU_MIN_GAIN_DB for ``plateau_patience`` validations
        and every hash level is active (earlier, new levels still add detail)."""
        if psnr > self.best_psnr + PLATEAU_MIN_GAIN_DB:
            self.best_psnr, self.validations_since_best = psnr, 0
        else:
            self.validations_since_best += 1
        done = (self.validations_since_best >= self.settings.plateau_patience
                and self.iteration >= self.schedule.all_levels_at())
        return self.dist.agree(done, self.device)

    def train(self, *, should_stop: Callable[[], bool] = lambda: False,
              on_step: Callable[[StepStats], None] | None = None) -> str:
        """Train to the end; returns "finished", "plateau" (high preset) or "stopped" (``should_stop`` said so)."""
        s = self.settings
        while self.iteration < s.iterations:
            if self.dist.agree(should_stop(), self.device):
                return "stopped"
            stats = self.step()
            if stats.rolled_back:
                continue
            if self.iteration % s.checkpoint_every == 0:
                self.take_snapshot()
            if self.iteration % s.validate_every == 0 or self.iteration == s.iterations:
                stats.psnr_validation = self.validate()
                if s.stop_on_plateau and self.plateaued(stats.psnr_validation):
                    if on_step:
                        on_step(stats)
                    return "plateau"
            if on_step:
                on_step(stats)
        return "finished"

    # --- state --------------------------------------------------------------------------------------------------
    def prepare_for_extraction(self) -> None:
        """Levels of the last completed iteration, as the mesh should see the field."""
        last = max(0, self.iteration - 1)
        self.model.set_levels(self.schedule.active_levels(last), self.schedule.annealed_levels(last))

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self._optimizer_state(),
            "occupancy": self.occupancy.state_dict(),
            "rng": {"pixels": self.pixel_generator.get_state(), "render": self.render_generator.get_state()},
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "best_psnr": self.best_psnr,
            "validations_since_best": self.validations_since_best,
            "settings": self.settings.to_json(),
            "normalization": self.dataset.normalization.to_json(),
            "saved_at": time.time(),
        }

    def _optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state with plain-number learning rates, so a checkpoint loads on any device."""
        state = self.optimizer.state_dict()
        for group in state["param_groups"]:
            group["lr"] = float(group["lr"])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"checkpoint format {state.get('format')!r} is not {STATE_FORMAT}")
        if TrainSettings.from_json(state["settings"]) != self.settings:
            raise CheckpointError("the checkpoint was trained with other settings (preset, plan or scene type) "
                                  "than this run; start a new run folder or resume with the same settings")
        if BoundingSphere.from_json(state["normalization"]) != self.dataset.normalization:
            raise CheckpointError(f"the checkpoint was trained inside the sphere {state['normalization']}, this run's "
                                  f"sphere is {self.dataset.normalization.to_json()}; start a new run folder to "
                                  "train with another sphere")
        self._load_training_state(state, restore_rng=True)
        self.take_snapshot()

    def _load_training_state(self, state: dict[str, Any], restore_rng: bool) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._learning_rates_on_device(self.optimizer)
        if self.graph is not None:
            self.graph.reset()            # the optimizer's state tensors are new: the graph must see them
        self.occupancy.load_state_dict(state["occupancy"])
        self.iteration = int(state["iteration"])
        self.lr_scale = float(state["lr_scale"])
        self.rollbacks = int(state.get("rollbacks", 0))
        self.best_psnr = float(state["best_psnr"])
        self.validations_since_best = int(state["validations_since_best"])
        if restore_rng:
            self.pixel_generator.set_state(state["rng"]["pixels"])
            self.render_generator.set_state(state["rng"]["render"].to(self.render_generator.get_state().device))
            self.dist.split_generators(self.pixel_generator, self.render_generator)

    def take_snapshot(self) -> dict[str, Any]:
        """The rollback point, on the CPU; returned so a checkpoint writes this very state without copying twice.

        A state the guard has not cleared yet (GPU: up to GUARD_EVERY_CUDA steps unchecked) is checked first; a
        broken one is rolled back instead of becoming the rollback point. Reaching a new snapshot also ends a
        series of rollbacks.
        """
        if self._snapshot is not None and self.dist.agree(bool(self._bad), self.device):
            self._roll_back(f"the loss or its gradient became NaN/infinite before iteration {self.iteration}")
            return self._snapshot
        self.rollbacks = 0
        self._snapshot = to_cpu(self.state_dict())
        return self._snapshot

    def checkpoint_state(self) -> dict[str, Any]:
        """The state a checkpoint writes now: the snapshot when it is of this very state, else a fresh one."""
        if self._snapshot is not None and self._snapshot["iteration"] == self.iteration and not self.rollbacks:
            return self._snapshot
        return self.take_snapshot()

    def close(self) -> None:
        if self.graph is not None:
            self.graph.reset()
        self.images.close()
        self.validation_images.close()
