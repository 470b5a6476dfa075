"""The reconstruct job: photos in, meshes out. One function serves the server's job kind and the CLI's ``train``.

``run_reconstruction`` loads and checks the dataset, plans GPU memory, trains (resuming from the run folder's last
checkpoint if there is one), reports progress, streams a coarse preview mesh every ``preview_every_s`` seconds,
writes checkpoints, honours cancel requests (checkpoint, then return) and finally extracts the asset and writes
its files. The run folder holds ``config.json``, ``checkpoints/`` and ``meshes/`` (the reporter keeps the log); the final
mesh is delivered as the ``extract`` job delivers its own (``extract.deliver_asset``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from ...shared.jobs import ReconstructConfig, config_to_json
from ...shared.sphere import BoundingSphere
from ..data.dataset import DatasetError, PosedDataset, load_dataset
from ..data.images import default_host_budget
from ..mesh.pipeline import build_mesh
from ..model.encoding_choice import EncodingUnavailable, choose_encoding, encoding_for_checkpoint
from ..train.checkpoint import CheckpointError, load_latest, save_checkpoint, write_json_atomic
from ..train.distributed import Distributed
from ..train.memory_plan import MemoryPlan, MemoryPlanError, fixed_plan, plan_memory
from ..train.presets import Preset, preset as get_preset, preset_with
from ..train.settings import TrainSettings, build_settings
from ..train.trainer import StepStats, Trainer, TrainingDiverged
from .device import make_current, resolve_device
from .extract import deliver_asset
from .failure import JobFailed
from .rank_pool import train_on_pool
from .reporting import Reporter, allowed_roots

PROGRESS_EVERY_S = 0.5
EMA = 0.9


def plan_for(preset: Preset, device: torch.device, *, with_background: bool,
             resumed: TrainSettings | None = None) -> MemoryPlan | None:
    """The memory plan on a GPU, from its free memory now (a resumed run keeps its table, batch and sampling);
    None on the CPU, where the preset runs as it is."""
    if device.type != "cuda":
        return None
    free = Distributed.from_env().least(torch.cuda.mem_get_info(device)[0])   # the same plan on every rank
    where = f"{torch.cuda.get_device_name(device)} ({device})"
    if resumed is None:
        return plan_memory(preset, free, with_background=with_background, device_name=where)
    grid = resumed.model.sdf
    return fixed_plan(preset, free, grid.log2_hashmap_size, grid.features_per_level, resumed.rays_per_iter,
                      resumed.sampling.n_background, with_background=with_background, device_name=where)


def _with_background(dataset: PosedDataset, scene_type: str) -> bool:
    """Whether the run trains the NeRF++ background (as ``build_settings`` decides), which the plan must budget."""
    return not dataset.use_alpha and scene_type != "indoor"


def new_run_settings(preset_name: str, dataset: PosedDataset, scene_type: str, device: torch.device,
                     iterations: int | None = None, encoding: str = "auto",
                     preset_changes: Mapping[str, str] | None = None) -> tuple[TrainSettings, MemoryPlan | None]:
    """A new run's settings: the preset for this dataset and scene type, fitted to the GPU's free memory now, with
    the hash-grid implementation ``encoding`` resolves to on ``device``. ``preset_changes`` (``preset_with``) are
    the benchmarks' A/B of one recipe choice, and the memory plan is the changed preset's, so that what is tried
    fits the card."""
    chosen = preset_with(get_preset(preset_name), preset_changes or {})
    plan = plan_for(chosen, device, with_background=_with_background(dataset, scene_type))
    settings = build_settings(chosen, scene_type=scene_type, use_alpha=dataset.use_alpha,
                              n_views=len(dataset.views), plan=plan, iterations=iterations,
                              mixed_precision=device.type == "cuda", encoding=choose_encoding(encoding, device))
    return settings, plan


@dataclass
class _Session:
    """What the step callback keeps between steps: timers, smoothed figures, the last checkpoint."""

    started: float
    first_iteration: int
    last_progress: float = 0.0
    last_reported_iteration: int = -1
    last_preview: float = 0.0
    last_checkpoint_time: float = 0.0
    last_checkpoint_iteration: int = -1
    loss: float | None = None
    psnr_train: float | None = None
    psnr_validation: float | None = None


def run_reconstruction(config: ReconstructConfig, run_dir: Path, reporter: Reporter, device: str,
                       dataset: PosedDataset | None = None) -> None:
    """Train and deliver meshes for ``config`` in ``run_dir``; raises JobFailed for problems the user can fix.

    ``device`` is what the caller probed ('cuda', 'cpu', or 'auto'); ``config.device`` overrides it unless 'auto'.
    Several devices, comma-separated (the server's pool for ``config.gpus`` > 1), train as one rank each under
    torchrun (``rank_pool.py``), each rank running this function on its own device.
    ``dataset``: the config's dataset when the caller has loaded it already (the CLI, to read it once).
    """
    pool = device.split(",")
    if len(pool) > 1:
        train_on_pool(config, Path(run_dir), reporter, pool)
        return
    try:
        _run(config, Path(run_dir), reporter, device, dataset)
    except (DatasetError, MemoryPlanError, CheckpointError, TrainingDiverged, EncodingUnavailable) as exc:
        raise JobFailed(str(exc)) from exc


def _run(config: ReconstructConfig, run_dir: Path, reporter: Reporter, device_name: str,
         dataset: PosedDataset | None) -> None:
    dist = Distributed.from_env()
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(dist.device(resolve_device(config.device if config.device != "auto" else device_name)))
    make_current(device)
    checkpoints = run_dir / "checkpoints"
    resumed = load_latest(checkpoints)
    sphere = BoundingSphere(config.sphere_center, config.sphere_radius)
    if dataset is None:
        dataset = load_dataset(Path(config.dataset.path), sphere=sphere, scene_type=config.scene_type,
                               downscale=config.downscale, allowed_roots=allowed_roots(reporter))
    say = reporter.log if dist.is_main else (lambda line, level="info": None)
    for warning in dataset.warnings:
        say(warning, "warning")
    say(f"{len(dataset.train)} photos train, {len(dataset.validation)} validate "
        f"({'held out' if dataset.validation_held_out else 'training photos'})"
        f"{', alpha used as mask' if dataset.use_alpha else ''}; device {device}")
    if resumed is not None:
        settings = TrainSettings.from_checkpoint(*resumed)
        encoding, note = encoding_for_checkpoint(settings.model.sdf.encoding, config.encoding, device)
        settings = settings.with_encoding(encoding)
        if note:
            say(note, "warning")
        plan = plan_for(get_preset(settings.preset), device,
                        with_background=_with_background(dataset, config.scene_type), resumed=settings)
        if config.iterations is not None and config.iterations != settings.iterations:
            say(f"the run resumes with its own {settings.iterations} iterations, not the {config.iterations} asked "
                "for: its schedules are laid out over them (start a new run folder to train another length)",
                "warning")
    else:
        settings, plan = new_run_settings(config.preset, dataset, config.scene_type, device, config.iterations,
                                          config.encoding)
    if plan is not None:
        say(f"memory plan: {plan.describe()}")
    image_budget = plan.image_cache_bytes if plan else (default_host_budget() if device.type == "cpu" else 0)
    trainer = Trainer(dataset, settings, device=device, image_budget=image_budget, distributed=dist, log=say)
    try:
        if resumed is not None:
            trainer.load_state_dict(resumed[1])
            say(f"resumed from {resumed[0].name} at iteration {trainer.iteration}")
        if dist.is_main:
            write_json_atomic(run_dir / "config.json", {
                "reconstruct": config_to_json(config), "settings": settings.to_json(),
                "normalization": dataset.normalization.to_json(), "plan": plan.to_json() if plan else None,
                "dataset": {"photos": len(dataset.views), "train": len(dataset.train),
                            "validation": len(dataset.validation), "use_alpha": dataset.use_alpha}})
        _train(trainer, config, run_dir, reporter, dist)
    finally:
        trainer.close()


def _train(trainer: Trainer, config: ReconstructConfig, run_dir: Path, reporter: Reporter, dist: Distributed) -> None:
    settings = trainer.settings
    now = time.monotonic()
    session = _Session(started=now, first_iteration=trainer.iteration, last_preview=now, last_checkpoint_time=now,
                       last_checkpoint_iteration=trainer.iteration)

    def checkpoint() -> None:
        """Every rank refreshes its rollback point; rank 0 writes it."""
        if session.last_checkpoint_iteration != trainer.iteration:
            state = trainer.checkpoint_state()
            if dist.is_main:
                save_checkpoint(state, run_dir / "checkpoints", trainer.iteration)
        session.last_checkpoint_iteration, session.last_checkpoint_time = trainer.iteration, time.monotonic()

    def on_step(stats: StepStats) -> None:
        t = time.monotonic()
        if stats.psnr_validation is not None:
            session.psnr_validation = stats.psnr_validation
            if dist.is_main:
                reporter.log(f"iteration {stats.iteration}: validation PSNR {stats.psnr_validation:.2f} dB")
        if dist.is_main and t - session.last_progress >= PROGRESS_EVERY_S:
            session.last_progress = t
            _report_progress(trainer, session, stats, reporter, t)
        due = (trainer.iteration % settings.checkpoint_every == 0
               or t - session.last_checkpoint_time >= settings.checkpoint_every_s)
        if dist.agree(due, trainer.device):     # ranks' clocks differ; rank 0 decides for all
            checkpoint()
        if dist.is_main and config.preview_every_s > 0 and t - session.last_preview >= config.preview_every_s:
            _send_preview(trainer, config, reporter)
            session.last_preview = time.monotonic()

    outcome = trainer.train(should_stop=reporter.cancelled, on_step=on_step)
    checkpoint()
    if outcome == "stopped":
        if dist.is_main:
            reporter.log(f"stopped at iteration {trainer.iteration} on request; the checkpoint is saved and the run "
                         "resumes from it")
        return
    if dist.is_main:
        if outcome == "plateau":
            reporter.log(f"validation PSNR stopped improving; training ends at iteration {trainer.iteration}")
        if session.last_reported_iteration != trainer.iteration:
            _report_progress(trainer, session, None, reporter, time.monotonic())
        _deliver_final(trainer, config, run_dir, reporter)


def _report_progress(trainer: Trainer, session: _Session, stats: StepStats | None, reporter: Reporter,
                     now: float) -> None:
    if stats is not None:
        loss, psnr = stats.loss, stats.psnr_train
        session.loss = loss if session.loss is None else EMA * session.loss + (1 - EMA) * loss
        if math.isfinite(psnr):
            session.psnr_train = psnr if session.psnr_train is None else EMA * session.psnr_train + (1 - EMA) * psnr
    session.last_reported_iteration = trainer.iteration
    done = trainer.iteration - session.first_iteration
    rate = done / max(now - session.started, 1e-6)
    total = trainer.settings.iterations
    reporter.progress(iteration=trainer.iteration, total=total, loss=session.loss,
                      psnr=session.psnr_validation if session.psnr_validation is not None else session.psnr_train,
                      rate=rate, eta_s=(total - trainer.iteration) / rate if rate > 0 else float("inf"))


def _send_preview(trainer: Trainer, config: ReconstructConfig, reporter: Reporter) -> None:
    """A coarse mesh with vertex colours only: cheap enough to send every few seconds."""
    trainer.prepare_for_extraction()
    mesh = build_mesh(trainer.model.sdf_fn(), trainer.model.color_fn() if config.vertex_colors else None,
                      config.preview_resolution, device=trainer.device,
                      to_world=trainer.dataset.normalization.to_world_affine, remove_floaters=False,
                      vertex_colors=config.vertex_colors, texture_size=0)
    if mesh.face_count:
        reporter.mesh("preview_mesh", mesh, trainer.iteration)


def _deliver_final(trainer: Trainer, config: ReconstructConfig, run_dir: Path, reporter: Reporter) -> None:
    trainer.prepare_for_extraction()
    deliver_asset(trainer.model, trainer.dataset.normalization, trainer.iteration, config, run_dir / "meshes",
                  reporter, trainer.device, more_gpus=trainer.dist.other_gpus(trainer.device))
