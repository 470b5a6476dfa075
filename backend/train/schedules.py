"""Everything that changes with the iteration, as pure functions of it (recipe §1.2, §1.6, §1.7, §1.9).

Neuralangelo's schedule is written in absolute iterations for a 500k run (5k warm-up, +1 hash level per 5k,
learning-rate steps at 300k and 400k, cos annealing over 50k). Our runs are 100x shorter, so every phase is a
fraction of the run instead; ``ScheduleConfig.neuralangelo()`` gives the recipe's own fractions. Being pure
functions of the iteration, they need no state in a checkpoint: resuming at iteration i restores them exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleConfig:
    warmup: float = 0.02              # linear LR warm-up (and curvature warm-up), fraction of the run
    level_step: float = 0.024         # one more hash level per this fraction after warm-up
    init_levels: int = 4              # levels active from the start (object 4, scenes 8)
    anneal_end: float = 0.1           # NeuS cos annealing reaches the true cos here
    lr_steps: tuple[float, ...] = (0.85,)      # LR x lr_step_factor at each (the recipe: 0.6 and 0.8)
    lr_step_factor: float = 0.1

    @classmethod
    def neuralangelo(cls, init_levels: int = 4) -> "ScheduleConfig":
        """The recipe's phases as fractions of its 500k iterations."""
        return cls(warmup=5000 / 500000, level_step=5000 / 500000, init_levels=init_levels, anneal_end=0.1,
                   lr_steps=(0.6, 0.8), lr_step_factor=0.1)


@dataclass(frozen=True)
class Schedule:
    config: ScheduleConfig
    iterations: int
    n_levels: int
    per_level_scale: float
    curvature_weight: float

    @property
    def warmup_iters(self) -> int:
        return max(1, round(self.config.warmup * self.iterations))

    @property
    def level_step_iters(self) -> int:
        return max(1, round(self.config.level_step * self.iterations))

    def lr_factor(self, iteration: int) -> float:
        factor = min(1.0, (iteration + 1) / self.warmup_iters)
        for step in self.config.lr_steps:
            if iteration >= step * self.iterations:
                factor *= self.config.lr_step_factor
        return factor

    def annealed_levels(self, iteration: int) -> int:
        """Neuralangelo's ``anneal_levels``: min(L, max((it - warm-up) // step, 1))."""
        return min(self.n_levels, max((iteration - self.warmup_iters) // self.level_step_iters, 1))

    def active_levels(self, iteration: int) -> int:
        return max(min(self.config.init_levels, self.n_levels), self.annealed_levels(iteration))

    def all_levels_at(self) -> int:
        """The first iteration with every level active."""
        return self.warmup_iters + self.n_levels * self.level_step_iters

    def curvature(self, iteration: int) -> float:
        """Linear warm-up, then divided by the per-level scale for each annealed level (reaches ~1/64 at 16)."""
        if iteration <= self.warmup_iters:
            return self.curvature_weight * iteration / self.warmup_iters
        return self.curvature_weight / self.per_level_scale ** (self.annealed_levels(iteration) - 1)

    def cos_ratio(self, iteration: int) -> float:
        end = self.config.anneal_end * self.iterations
        return 1.0 if end <= 0 else min(1.0, iteration / end)


def per_level_scale(base_resolution: int, max_resolution: int, n_levels: int) -> float:
    if n_levels <= 1:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
