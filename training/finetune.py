"""Quantization-aware finetune (CODEC.md §7): Adam on every tensor the layout trains.

The finetune holds ``(codec, state, params)``: the codec object of the layout, the
``CodecState`` its ``prepare`` returned and the prepared raw parameters (a dict of
``nn.Parameter``). Positions and the voxel structure are frozen, there is no densification and
the SH degree stays at its maximum. Each step renders one training view with
``ft_render(camera, rendered, ...)`` of ``codec.simulate_with_rate(state, params)`` (RAHT → fake
quantization → inverse RAHT, direct quantization, the VQ codebook) and minimises
``(1 - 0.2)·L1 + 0.2·(1 - SSIM)``, plus the layout's rate weight times the codec's estimate of
the bits per coded Gaussian where it has one (the compact layout).
Views come from seeded shuffled passes (the training loop's
:class:`training.trainer.ViewSampler`).
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from compression.codec import Codec, CodecState
from gaussian_renderer import ft_render
from training.trainer import ViewSampler, photometric_loss
from utils.eval_utils import evaluate_views
from utils.loss_utils import ssim
from utils.lpips import LPIPS, lpips_for_evaluation

logger = logging.getLogger(__name__)

#: finetune learning rates per trained tensor (times ``--finetune_lr_scale``), constant in the
#: seed and official layouts (CODEC.md §7), varied over the steps by the compact layout's
#: ``Layout.finetune_schedule``; the VQ codebook learns at the rate of the f_rest it replaces
FINETUNE_LRS: dict[str, float] = {"f_dc": 2.5e-3, "f_rest": 1.25e-4, "codebook": 1.25e-4,
                                  "opacity": 0.05, "scaling": 5e-3, "rotation": 1e-3}
#: learning rate of the LSQ steps (their own Adam group, CODEC.md §6; not scaled)
LSQ_STEP_LR = 1e-3
#: weight of (1 - SSIM) in the finetune loss
LAMBDA_DSSIM = 0.2


def default_test_iterations(iterations: int) -> list[int]:
    """0, every 1000, and the last finetune iteration (sorted, unique)."""
    return sorted({0, *range(1000, iterations + 1, 1000), iterations})


def resolve_test_iterations(iterations: int, requested: Sequence[int]) -> list[int]:
    """``requested`` (or the default schedule when empty), checked against ``iterations``.

    Raises:
        ValueError: negative iterations or an iteration beyond ``iterations``.
    """
    if iterations < 0:
        raise ValueError(f"--finetune_iterations must be >= 0, got {iterations}")
    if not requested:
        return default_test_iterations(iterations)
    bad = [int(i) for i in requested if not 0 <= int(i) <= iterations]
    if bad:
        raise ValueError(f"--finetune_test_iterations must lie in [0, {iterations}] "
                         f"(--finetune_iterations), got {bad}")
    return sorted({int(i) for i in requested})


def create_finetune_optimizer(codec: Codec, state: CodecState,
                              params: Mapping[str, nn.Parameter], lr_scale: float = 1.0
                              ) -> torch.optim.Adam:
    """Adam (eps 1e-15) over what the codec trains (``codec.trainable``: ``Layout.trains``).

    Seed layout: f_dc, f_rest, opacity, scaling, rotation. Official layout: the codebook
    replaces f_rest, which is then unused. Every parameter the layout does not train (``xyz``
    always) is frozen. LSQ: the learned steps of every quantizer get one more group (lr
    ``LSQ_STEP_LR``). Groups are named like the tensors (``codebook``, ``lsq_steps``).

    Raises:
        ValueError: ``lr_scale`` is not positive.
    """
    if not lr_scale > 0:
        raise ValueError(f"--finetune_lr_scale must be > 0, got {lr_scale}")
    trained, steps = codec.trainable(state, params)
    for name, param in params.items():
        param.requires_grad_(name in trained)
    groups: list[dict[str, Any]] = [{"params": [tensor], "lr": FINETUNE_LRS[name] * lr_scale,
                                     "name": name} for name, tensor in trained.items()]
    if steps:
        groups.append({"params": steps, "lr": LSQ_STEP_LR, "name": "lsq_steps"})
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def leaf_parameters(params: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    """A codec's prepared raw parameters as the finetune trains them: leaf ``nn.Parameter`` s
    by name (:func:`create_finetune_optimizer` sets which require gradients)."""
    return {name: nn.Parameter(value.detach()) for name, value in params.items()}


@dataclass
class EvalResult:
    """Mean metrics of float renders clamped to [0, 1]; ``lpips`` None without weights."""

    psnr: float
    ssim: float
    lpips: Optional[float]


def lpips_from_environment(device: torch.device, quiet: bool = False) -> Optional[LPIPS]:
    """The LPIPS network of the codec's evaluations, as metrics.py finds it without
    ``--lpips_weights`` (``$LPIPS_WEIGHTS``, else the standard VGG16 weights; None, said in
    one line, when neither is there)."""
    return lpips_for_evaluation(None, device, progress=not quiet)


@torch.no_grad()
def evaluate_codec(codec: Codec, state: CodecState, params: Mapping[str, torch.Tensor],
                   cameras: Sequence[Any], pipe: Any, background: torch.Tensor,
                   lpips_net: Optional[LPIPS] = None) -> EvalResult:
    """PSNR / SSIM / LPIPS of ``ft_render`` on ``cameras`` with the codec state in evaluation
    mode (the quantizer state does not move; the caller restores training mode)."""
    state.eval()
    device = state.keys.device
    simulated = codec.simulate(state, params)
    extra: dict[str, list[float]] = {"ssim": [], "lpips": []}

    def on_view(index: int, camera: Any, image: torch.Tensor, gt: torch.Tensor) -> None:
        extra["ssim"].append(float(ssim(image, gt)))
        if lpips_net is not None:
            extra["lpips"].append(float(lpips_net(image[None], gt[None])))

    metrics = evaluate_views(
        lambda cam: ft_render(cam, simulated, pipe, background)["render"].to(device),
        cameras, on_view)
    lpips = sum(extra["lpips"]) / len(extra["lpips"]) if extra["lpips"] else None
    return EvalResult(psnr=metrics["psnr"], ssim=sum(extra["ssim"]) / len(extra["ssim"]),
                      lpips=lpips)


class ParameterAverage:
    """Exponential moving average of tensors over optimizer steps, bias-corrected so that the
    starting values carry no weight: after step t, ``E_t = E_(t-1) + w_t·(p_t - E_(t-1))`` with
    ``w_t = (1 - d) / (1 - d^t)``, i.e. the mean of p_1 … p_t weighted by d^(t-k) (E_1 = p_1).
    """

    def __init__(self, tensors: Sequence[torch.Tensor], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"average decay must lie in (0, 1), got {decay}")
        self.tensors = list(tensors)
        self.decay = decay
        self.averages = [tensor.detach().clone() for tensor in self.tensors]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the tensors' values after 1-based step ``step``."""
        weight = (1.0 - self.decay) / (1.0 - self.decay ** step)
        for average, tensor in zip(self.averages, self.tensors):
            average.lerp_(tensor, weight)

    @torch.no_grad()
    def load(self) -> None:
        """Put the averages into the tensors."""
        for average, tensor in zip(self.averages, self.tensors):
            tensor.copy_(average)

    @contextmanager
    def loaded(self) -> Iterator[None]:
        """The averages in the tensors for the block, the tensors' own values after it."""
        with torch.no_grad():
            own = [tensor.clone() for tensor in self.tensors]
        self.load()
        try:
            yield
        finally:
            with torch.no_grad():
                for tensor, value in zip(self.tensors, own):
                    tensor.copy_(value)


def finetune(codec: Codec, state: CodecState, params: Mapping[str, nn.Parameter],
             cameras: Sequence[Any], pipe: Any, background: torch.Tensor, *, iterations: int,
             test_iterations: Sequence[int], on_test: Callable[[int], Optional[float]],
             lr_scale: float = 1.0, generator: Optional[torch.Generator] = None,
             quiet: bool = False, writer: Any = None) -> None:
    """Run the quantization-aware finetune of a prepared model in place.

    Args:
        codec, state, params: the layout's codec, the state its ``prepare`` returned and the
            prepared raw parameters as leaf ``nn.Parameter`` s (trained in place).
        cameras: training views (``original_image`` [3, H, W] in [0, 1]).
        pipe: PipelineParams-like (``backend``).
        background: [3] background colour.
        iterations: finetune steps (0: only ``on_test(0)`` when 0 is a test iteration).
        test_iterations: steps after which ``on_test(step)`` runs (0 = before any step).
        on_test: evaluates and saves; may return a PSNR logged as ``finetune/psnr``. The
            codec state is switched back to training mode afterwards.
        lr_scale: factor on every attribute learning rate (the layout's
            ``finetune_schedule`` then varies every rate over the steps; with its
            ``average_decay`` the tests see, and the finetune leaves in ``params``, the
            :class:`ParameterAverage` of the trained tensors; with its ``rate_weight`` w the
            loss adds w times ``codec.simulate_with_rate``'s bits).
        generator: CPU torch.Generator of the view order (None: seeded with 0).
        quiet: no progress bar.
        writer: optional TensorBoard SummaryWriter (``finetune/loss``, ``finetune/psnr``,
            ``finetune/estimated_bits`` where the codec has a rate model).

    Raises:
        ValueError: bad iteration settings or learning-rate scale.
    """
    optimizer = create_finetune_optimizer(codec, state, params, lr_scale)
    base_rates = [group["lr"] for group in optimizer.param_groups]
    schedule = state.layout.finetune_schedule
    average = (ParameterAverage([p for group in optimizer.param_groups for p in group["params"]],
                                schedule.average_decay) if schedule.average_decay else None)
    tests = set(resolve_test_iterations(iterations, test_iterations))
    sampler = ViewSampler(len(cameras), generator if generator is not None
                          else torch.Generator().manual_seed(0))
    device = state.keys.device

    def run_test(step: int) -> None:
        value = on_test(step)
        if writer is not None and value is not None and math.isfinite(value):
            writer.add_scalar("finetune/psnr", value, step)
        state.train()

    if 0 in tests:
        run_test(0)
    state.train()
    bar = tqdm(range(1, iterations + 1), desc="Finetune", disable=quiet, dynamic_ncols=True)
    try:
        for step in bar:
            for group, rate in zip(optimizer.param_groups, base_rates):
                group["lr"] = rate * schedule.factor(group["name"], step, iterations)
            camera = cameras[sampler.next()]
            rendered, bits = codec.simulate_with_rate(state, params)
            image = ft_render(camera, rendered, pipe, background)["render"]
            _, loss = photometric_loss(image, camera.original_image.to(device), LAMBDA_DSSIM)
            if bits is not None and schedule.rate_weight:
                loss = loss + schedule.rate_weight * bits
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if writer is not None:
                writer.add_scalar("finetune/loss", loss.item(), step)
                if bits is not None:
                    writer.add_scalar("finetune/estimated_bits", bits.item(), step)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.5f}")
            if average is not None:
                average.update(step)
            if step in tests:
                with average.loaded() if average is not None else nullcontext():
                    run_test(step)
    finally:
        bar.close()
    if average is not None:
        average.load()  # the finetune's result
