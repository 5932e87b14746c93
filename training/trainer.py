"""The 3DGS training loop: one view per iteration, L1 + D-SSIM, Adam, densification hooks.

The loop only wires parts together: the learning-rate and SH schedules, the loss, the
strategy hooks (``scene/strategy.py``: ``--strategy default``; ``scene/mcmc.py``: ``mcmc``), the
optimizer (``training/optim.py``), evaluation (``utils/eval_utils.py``), logging,
saving and checkpoints (``training/checkpoint.py``).
"""
from __future__ import annotations

import logging
import random
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO

import numpy as np
import torch
from tqdm import tqdm

from arguments import ModelParams, OptimizationParams, PipelineParams
from gaussian_renderer import render
from scene import Scene
from scene.cameras import Camera
from scene.gaussian_model import GaussianModel
from scene.mcmc import MCMCStrategy
from scene.strategy import DefaultStrategy, StepInfo, Strategy
from training.checkpoint import (capture_rng_states, load_checkpoint, restore_rng_states,
                                 save_checkpoint)
from training.optim import create_optimizer, position_lr_schedule, set_group_lr
from utils.eval_utils import evaluate_views
from utils.loss_utils import l1_loss, ssim
from utils.output_paths import checkpoint_path

logger = logging.getLogger(__name__)

#: training views evaluated at each test iteration (the original's range(5, 30, 5))
NUM_TRAIN_EVAL_VIEWS = 5
#: views per split whose render / ground truth go to TensorBoard
NUM_LOGGED_IMAGES = 3


@dataclass
class TrainOptions:
    """Run options of ``train.py`` that are not model, optimization or pipeline flags."""

    test_iterations: list[int] = field(default_factory=lambda: [7_000, 30_000])
    save_iterations: list[int] = field(default_factory=lambda: [7_000, 30_000])
    checkpoint_iterations: list[int] = field(default_factory=list)
    start_checkpoint: Optional[str] = None
    quiet: bool = False
    seed: int = 0
    detect_anomaly: bool = False


class ViewSampler:
    """Shuffled passes over ``num_views`` view indices, re-shuffled when a pass is used up."""

    def __init__(self, num_views: int, generator: torch.Generator) -> None:
        if num_views <= 0:
            raise ValueError("ViewSampler: the scene has no training views")
        self.num_views = num_views
        self.generator = generator
        self.remaining: list[int] = []

    def next(self) -> int:
        """Index of the next view."""
        if not self.remaining:
            self.remaining = torch.randperm(self.num_views, generator=self.generator).tolist()
        return self.remaining.pop()

    def state_dict(self) -> dict[str, Any]:
        return {"num_views": self.num_views, "remaining": list(self.remaining)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_views"] != self.num_views:
            raise ValueError(f"checkpoint view order covers {state['num_views']} views, the "
                             f"scene has {self.num_views}")
        self.remaining = list(state["remaining"])


class TqdmLoggingHandler(logging.Handler):
    """Send log records through ``tqdm.write`` so they do not break the progress bar."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream  # None: tqdm.write's default, stdout

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=self.stream)


def configure_logging(quiet: bool = False, stream: TextIO | None = None) -> None:
    """Root logging for the entry points: INFO through tqdm, or warnings only with ``quiet``;
    ``stream`` (default stdout) is ``sys.stderr`` for tools whose stdout is JSON."""
    handler = TqdmLoggingHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler],
                        force=True)


def seed_everything(seed: int) -> torch.Generator:
    """Seed the global RNGs once (for code that draws from them) and return a local generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def photometric_loss(image: torch.Tensor, gt: torch.Tensor, lambda_dssim: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - λ) L1 + λ (1 - SSIM)`` of [3, H, W] images; returns (L1, total loss)."""
    l1 = l1_loss(image, gt)
    return l1, (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - ssim(image, gt))


def sh_degree_at(step: int, max_sh_degree: int, sh_increase_interval: int) -> int:
    """Active SH degree after the schedule has run to ``step`` (one more every interval)."""
    return min(max_sh_degree, step // sh_increase_interval)


def train(dataset: ModelParams, opt: OptimizationParams, pipe: PipelineParams,
          options: TrainOptions, cfg: Optional[Namespace | dict] = None
          ) -> tuple[Scene, GaussianModel]:
    """Train a 3DGS model into ``dataset.model_path``; returns the scene and the final model.

    Writes cfg_args (``cfg``, default the ModelParams), cameras.json and input.ply, then
    PLYs at ``options.save_iterations`` and the final iteration, checkpoints at
    ``options.checkpoint_iterations`` and TensorBoard events, all in the model folder. The
    model and the renders live on ``dataset.data_device``.
    """
    _check_options(opt, options)
    generator = seed_everything(options.seed)
    gaussians = GaussianModel(dataset.sh_degree)
    scene = Scene(dataset, gaussians, seed=options.seed)
    scene.load_images()
    scene.write_model_files(cfg)
    device = torch.device(dataset.data_device)
    gaussians.to(device)
    loop = _TrainingLoop(scene, gaussians, opt, pipe, options, generator, device)
    with torch.autograd.set_detect_anomaly(options.detect_anomaly):
        loop.run()
    return scene, gaussians


def make_strategy(opt: OptimizationParams, white_background: bool = False) -> Strategy:
    """The densification strategy that ``--strategy`` names, built from its flags."""
    if opt.strategy == "mcmc":
        return MCMCStrategy.from_opt(opt)
    if opt.strategy == "default":
        return DefaultStrategy.from_opt(opt, white_background)
    raise ValueError(f"--strategy must be default or mcmc, got {opt.strategy!r}")


def _check_options(opt: OptimizationParams, options: TrainOptions) -> None:
    if opt.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {opt.iterations}")
    if opt.strategy == "mcmc":
        MCMCStrategy.from_opt(opt)  # its flags are checked before the scene loads
    if opt.sh_increase_interval < 1:
        raise ValueError(f"--sh_increase_interval must be >= 1, got {opt.sh_increase_interval}")
    for name in ("test_iterations", "save_iterations", "checkpoint_iterations"):
        bad = [i for i in getattr(options, name) if i < 0]
        if bad:
            raise ValueError(f"--{name} must be non-negative iterations, got {bad}")


class _TrainingLoop:
    """State of one run: model, optimizer, strategy, RNGs, logging; ``run()`` iterates."""

    def __init__(self, scene: Scene, gaussians: GaussianModel, opt: OptimizationParams,
                 pipe: PipelineParams, options: TrainOptions, generator: torch.Generator,
                 device: torch.device) -> None:
        self.scene, self.gaussians, self.opt, self.pipe = scene, gaussians, opt, pipe
        self.options, self.generator, self.device = options, generator, device
        self.cameras = scene.getTrainCameras()
        self.extent = scene.cameras_extent
        self.strategy = make_strategy(opt, scene.args.white_background)
        self.strategy.initialize_params(gaussians.params, generator)
        self.optimizer = create_optimizer(gaussians.params, opt, self.extent)
        self.xyz_lr = position_lr_schedule(opt, self.extent)
        self.state = self.strategy.initialize_state(gaussians.num_gaussians, device)
        self.sampler = ViewSampler(len(self.cameras), generator)
        bg = [1.0, 1.0, 1.0] if scene.args.white_background else [0.0, 0.0, 0.0]
        self.background = torch.tensor(bg, device=device)
        self.first_step = 1
        if options.start_checkpoint:
            self.first_step = self._restore(load_checkpoint(options.start_checkpoint)) + 1
        self.last_psnr: Optional[float] = None

    # ------------------------------------------------------------------ iteration

    def run(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.scene.model_path))
        steps = range(self.first_step, self.opt.iterations + 1)
        bar = tqdm(steps, desc="Training", disable=self.options.quiet, dynamic_ncols=True)
        loss_ema = 0.0
        try:
            for step in bar:
                l1, loss = self._step(step)
                loss_ema = 0.4 * loss + 0.6 * loss_ema if step > self.first_step else loss
                self._log_scalars(step, l1, loss)
                self._after_step(step)
                if step % 10 == 0 or step == self.opt.iterations:
                    bar.set_postfix(loss=f"{loss_ema:.5f}", N=self.gaussians.num_gaussians,
                                    psnr="-" if self.last_psnr is None
                                    else f"{self.last_psnr:.2f}")
        finally:
            bar.close()
            self.writer.close()

    def _step(self, step: int) -> tuple[float, float]:
        """One optimisation step on one view (densification included); returns (L1, loss)."""
        lr = self.xyz_lr(step)
        set_group_lr(self.optimizer, "xyz", lr)
        self.gaussians.active_sh_degree = sh_degree_at(step, self.gaussians.max_sh_degree,
                                                       self.opt.sh_increase_interval)
        camera = self.cameras[self.sampler.next()]
        background = (torch.rand(3, generator=self.generator).to(self.device)
                      if self.opt.random_background else self.background)
        render_pkg = render(camera, self.gaussians, self.pipe, background)
        self.strategy.step_pre_backward(render_pkg)
        gt = camera.original_image.to(self.device)
        l1, loss = photometric_loss(render_pkg["render"], gt, self.opt.lambda_dssim)
        regularization = self.strategy.regularization(self.gaussians.params)
        if regularization is not None:
            loss = loss + regularization
        loss.backward()
        info = StepInfo(render_pkg, self.extent, lr, self.generator)
        params = self.gaussians.params
        with torch.no_grad():
            self.strategy.step_post_backward(params, self.optimizer, self.state, step, info)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.strategy.step_post_optimizer(params, self.optimizer, self.state, step, info)
        return l1.item(), loss.item()

    def _after_step(self, step: int) -> None:
        """Evaluation, saving and checkpoints scheduled at ``step``."""
        if step in self.options.test_iterations:
            self._evaluate(step)
        if step in self.options.save_iterations or step == self.opt.iterations:
            logger.info("[ITER %d] Saving Gaussians to %s", step, self.scene.save(step))
        if step in self.options.checkpoint_iterations:
            path = save_checkpoint(checkpoint_path(self.scene.model_path, step),
                                   self._checkpoint(step))
            logger.info("[ITER %d] Saving checkpoint %s", step, path)

    # ------------------------------------------------------------------ logging

    def _log_scalars(self, step: int, l1: float, loss: float) -> None:
        self.writer.add_scalar("train_loss_patches/l1_loss", l1, step)
        self.writer.add_scalar("train_loss_patches/total_loss", loss, step)
        self.writer.add_scalar("total_points", self.gaussians.num_gaussians, step)
        self.writer.add_scalar("lr/xyz", self.optimizer.param_groups[0]["lr"], step)

    @torch.no_grad()
    def _evaluate(self, step: int) -> None:
        train_views = [self.cameras[i % len(self.cameras)]
                       for i in range(5, 5 * (NUM_TRAIN_EVAL_VIEWS + 1), 5)]
        splits = {"test": self.scene.getTestCameras(), "train": train_views}
        for name, views in splits.items():
            if not views:
                continue

            def log_image(index: int, camera: Camera, image: torch.Tensor, gt: torch.Tensor,
                          name: str = name) -> None:
                if index < NUM_LOGGED_IMAGES:
                    tag = f"{name}_view_{camera.image_name}"
                    self.writer.add_image(f"{tag}/render", image, step)
                    self.writer.add_image(f"{tag}/ground_truth", gt, step)

            metrics = evaluate_views(
                lambda cam: render(cam, self.gaussians, self.pipe, self.background)["render"],
                views, log_image)
            logger.info("[ITER %d] Evaluating %s: L1 %.5f PSNR %.2f", step, name,
                        metrics["l1"], metrics["psnr"])
            for key, value in metrics.items():
                self.writer.add_scalar(f"{name}/loss_viewpoint - {key}", value, step)
            if name == "test" or not self.scene.getTestCameras():
                self.last_psnr = metrics["psnr"]
        self.writer.add_histogram("scene/opacity_histogram", self.gaussians.get_opacity, step)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self, step: int) -> dict[str, Any]:
        return {"iteration": step, "model": self.gaussians.capture_state(),
                "optimizer": self.optimizer.state_dict(), "strategy": dict(self.state),
                "rng": capture_rng_states(self.generator),
                "view_order": self.sampler.state_dict()}

    def _restore(self, checkpoint: dict[str, Any]) -> int:
        """Load a checkpoint into the run; returns its iteration."""
        self.gaussians.restore_state(checkpoint["model"])
        self.optimizer = create_optimizer(self.gaussians.params, self.opt, self.extent)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        expected = set(self.strategy.initialize_state())
        if set(checkpoint["strategy"]) != expected:
            raise ValueError(f"checkpoint strategy state has keys {sorted(checkpoint['strategy'])}"
                             f", --strategy {self.opt.strategy} keeps {sorted(expected)}: resume "
                             "with the strategy that wrote it")
        self.state = {key: value.to(self.device) for key, value in checkpoint["strategy"].items()}
        restore_rng_states(checkpoint["rng"], self.generator)
        self.sampler.load_state_dict(checkpoint["view_order"])
        logger.info("Resuming from iteration %d", checkpoint["iteration"])
        return int(checkpoint["iteration"])
