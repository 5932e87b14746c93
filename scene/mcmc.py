"""Densification as Markov chain Monte Carlo under a Gaussian budget (Kheradmand et al. 2024).

"3D Gaussian Splatting as Markov Chain Monte Carlo" (NeurIPS 2024) treats the Gaussians as
samples of the scene's density, with gsplat's ``MCMCStrategy`` defaults and flag names:

* every ``refine_every`` iterations in (``refine_start_iter``, ``refine_stop_iter``), the dead
  Gaussians (opacity <= ``min_opacity``) are moved onto live ones drawn with probability
  proportional to opacity, then ``min(cap_max, int(1.05 N)) - N`` new ones are drawn the same
  way from all Gaussians. A source drawn ``n - 1`` times becomes ``n`` copies whose opacity and
  scale follow the paper's equation (9) (:func:`relocation_correction`), so that the copies
  together render like the source did;
* after every optimizer step, each centre moves by ``Σ ε · sigmoid_k(1 − opacity) · lr ·
  noise_lr`` (``Σ`` its covariance, ``ε`` standard normal, ``lr`` the step's xyz learning rate,
  ``sigmoid_k`` a steep sigmoid that leaves opaque Gaussians still);
* the loss gains ``opacity_reg · mean(opacity) + scale_reg · mean(scale)`` (L1 of the
  activated values), which lets unneeded Gaussians die and be relocated.

Optimizer moments follow gsplat: the relocation zeroes the moments of the sources it edits (the
dead rows that receive their copy keep theirs), and appended rows start at zero. Every random
draw comes from the training loop's CPU generator, so a run resumes exactly from a checkpoint
on CPU and CUDA.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from scene.gaussian_model import nearest_neighbour_sq_dist
from scene.strategy import Params, StepInfo, append_gaussians, num_rows
from utils.general_utils import build_rotation

if TYPE_CHECKING:  # annotations only: no import cycle with the argument groups
    from arguments import OptimizationParams

logger = logging.getLogger(__name__)

#: copies of one source counted by the relocation (gsplat's binomial table size, ``n_max``)
MAX_COPIES = 51
#: the noise gate sigmoid(k (1 - opacity - x0)): gsplat's steepness k and centre x0
NOISE_GATE_STEEPNESS = 100.0
NOISE_GATE_CENTRE = 0.995
#: C(n, j) for n, j in 0..MAX_COPIES, exact in float64 (all below 2**53)
_BINOMIALS = torch.tensor([[math.comb(n, j) for j in range(MAX_COPIES + 1)]
                           for n in range(MAX_COPIES + 1)], dtype=torch.float64)
#: growth per refinement step until cap_max (gsplat: int(1.05 N))
GROWTH = 1.05


def relocation_correction(opacities: torch.Tensor, scales: torch.Tensor, copies: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Opacity and scale of each of ``n`` copies of a Gaussian: the paper's equation (9).

    ``α_new = 1 − (1 − α)^(1/n)`` and ``s_new = α / (Σ_{i=1..n} Σ_{k=0..i−1} C(i−1, k)
    (−1)^k α_new^(k+1) / √(k+1)) · s``; the double sum is evaluated as its equal single sum
    ``Σ_{k=0..n−1} C(n, k+1) (−1)^k α_new^(k+1) / √(k+1)`` (Σ_{i=k+1..n} C(i−1, k) = C(n, k+1)),
    in float64 because its terms alternate.

    Args:
        opacities: [M] activated opacities of the sources, in (0, 1].
        scales: [M, 3] activated scales of the sources.
        copies: [M] int, copies per source n (the source included), clamped to
            [1, :data:`MAX_COPIES`].

    Returns:
        ([M] new opacities, [M, 3] new scales), in the inputs' dtype.
    """
    copies = copies.clamp(1, MAX_COPIES).long()
    n = copies.to(torch.float64)
    alpha = opacities.to(torch.float64)
    new_alpha = 1.0 - torch.pow(1.0 - alpha, 1.0 / n)
    k = torch.arange(MAX_COPIES, dtype=torch.float64, device=alpha.device)  # [K]
    binom = _BINOMIALS.to(alpha.device)[copies][:, 1:]  # [M, K]: C(n, k+1), 0 for k+1 > n
    terms = binom * (-1.0) ** k * new_alpha[:, None] ** (k + 1) / torch.sqrt(k + 1)
    factor = alpha / terms.sum(dim=1)
    new_scales = factor[:, None] * scales.to(torch.float64)
    return new_alpha.to(opacities.dtype), new_scales.to(scales.dtype)


def sample_by_opacity(opacities: torch.Tensor, count: int,
                      generator: Optional[torch.Generator]) -> torch.Tensor:
    """[count] indices drawn with replacement, with probability proportional to ``opacities``.

    Drawn on the CPU from ``generator`` (the same draws on any device); returned on the
    opacities' device.
    """
    draws = torch.multinomial(opacities.detach().double().cpu(), count, replacement=True,
                              generator=generator)
    return draws.to(opacities.device)


@torch.no_grad()
def _copy_onto(params: Params, optimizer: torch.optim.Optimizer, sources: torch.Tensor,
               min_opacity: float) -> None:
    """Give the ``sources`` rows the corrected opacity / scale of their copies, in place.

    A source drawn ``m`` times becomes one of ``m + 1`` copies; its Adam moments are zeroed.
    """
    copies = torch.bincount(sources, minlength=num_rows(params))[sources] + 1
    opacities = torch.sigmoid(params["opacity"][sources, 0])
    new_opacities, new_scales = relocation_correction(
        opacities, torch.exp(params["scaling"][sources]), copies)
    eps = torch.finfo(torch.float32).eps
    new_opacities = new_opacities.clamp(min=min_opacity, max=1.0 - eps)
    params["opacity"][sources, 0] = torch.logit(new_opacities)
    params["scaling"][sources] = torch.log(new_scales)
    for group in optimizer.param_groups:
        for key, value in optimizer.state.get(group["params"][0], {}).items():
            if key != "step":
                value[sources] = 0


@torch.no_grad()
def relocate_dead(params: Params, optimizer: torch.optim.Optimizer, dead: torch.Tensor,
                  min_opacity: float, generator: Optional[torch.Generator]) -> int:
    """Move the ``dead`` [N] bool rows onto live Gaussians drawn by opacity; returns how many.

    Each dead row becomes a copy of its drawn source (every parameter), after the source's
    opacity and scale were corrected for its number of copies.
    """
    dead_rows = dead.nonzero()[:, 0]
    alive_rows = (~dead).nonzero()[:, 0]
    if len(dead_rows) == 0 or len(alive_rows) == 0:
        return 0
    opacities = torch.sigmoid(params["opacity"][alive_rows, 0])
    sources = alive_rows[sample_by_opacity(opacities, len(dead_rows), generator)]
    _copy_onto(params, optimizer, sources, min_opacity)
    for p in params.values():
        p[dead_rows] = p[sources]
    return len(dead_rows)


@torch.no_grad()
def add_by_opacity(params: Params, optimizer: torch.optim.Optimizer, count: int,
                   min_opacity: float, generator: Optional[torch.Generator]) -> None:
    """Append ``count`` copies of Gaussians drawn by opacity (their moments start at zero)."""
    sources = sample_by_opacity(torch.sigmoid(params["opacity"][:, 0]), count, generator)
    _copy_onto(params, optimizer, sources, min_opacity)
    append_gaussians(params, optimizer, None,
                     {name: p.detach()[sources] for name, p in params.items()})


@torch.no_grad()
def inject_noise(params: Params, scale: float, generator: Optional[torch.Generator]) -> None:
    """Move each centre by ``Σ ε · sigmoid_k(1 − opacity) · scale`` (module docstring)."""
    xyz = params["xyz"]
    opacities = torch.sigmoid(params["opacity"][:, 0])
    gate = torch.sigmoid(NOISE_GATE_STEEPNESS * ((1.0 - opacities) - NOISE_GATE_CENTRE))
    rotations = build_rotation(params["rotation"])  # [N, 3, 3]
    variances = torch.exp(params["scaling"]) ** 2  # [N, 3]
    covariances = rotations @ (variances[:, :, None] * rotations.transpose(1, 2))
    noise = torch.randn(xyz.shape, generator=generator, dtype=xyz.dtype).to(xyz.device)
    noise = noise * (gate * scale)[:, None]
    xyz.add_((covariances @ noise[:, :, None])[:, :, 0])


@dataclass
class MCMCStrategy:
    """gsplat's ``MCMCStrategy`` (module docstring) behind the :class:`Strategy` interface."""

    #: the Gaussian budget: never more Gaussians than this
    cap_max: int = 1_000_000
    #: position noise scale, times the xyz learning rate
    noise_lr: float = 5e5
    #: relocate and add at iterations (refine_start_iter, refine_stop_iter) ...
    refine_start_iter: int = 500
    refine_stop_iter: int = 25_000
    #: ... every refine_every iterations
    refine_every: int = 100
    #: Gaussians at or below this opacity are dead (relocated)
    min_opacity: float = 0.005
    #: weight of the mean activated opacity in the loss
    opacity_reg: float = 0.01
    #: weight of the mean activated scale in the loss
    scale_reg: float = 0.01
    #: initial opacity of every Gaussian
    init_opa: float = 0.5
    #: factor on the initial scales (the mean distance to the 3 nearest points)
    init_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.cap_max < 1:
            raise ValueError(f"--cap_max must be >= 1 for --strategy mcmc, got {self.cap_max}")
        if self.refine_every < 1:
            raise ValueError(f"--refine_every must be >= 1, got {self.refine_every}")
        if not 0.0 < self.init_opa < 1.0:
            raise ValueError(f"--init_opa must be in (0, 1), got {self.init_opa}")
        if self.init_scale <= 0.0:
            raise ValueError(f"--init_scale must be > 0, got {self.init_scale}")

    @classmethod
    def from_opt(cls, opt: "OptimizationParams") -> "MCMCStrategy":
        """Build from the flags (cap_max, noise_lr, refine_*, min_opacity, *_reg, init_*)."""
        return cls(cap_max=opt.cap_max, noise_lr=opt.noise_lr,
                   refine_start_iter=opt.refine_start_iter,
                   refine_stop_iter=opt.refine_stop_iter, refine_every=opt.refine_every,
                   min_opacity=opt.min_opacity, opacity_reg=opt.opacity_reg,
                   scale_reg=opt.scale_reg, init_opa=opt.init_opa, init_scale=opt.init_scale)

    @torch.no_grad()
    def initialize_params(self, params: Params, generator: Optional[torch.Generator]) -> None:
        """Keep ``cap_max`` starting points at most (a uniform draw), then gsplat's MCMC start:
        opacity ``init_opa``, scales ``init_scale`` × the mean distance to the 3 nearest kept
        points."""
        count = num_rows(params)
        if count > self.cap_max:
            keep = torch.randperm(count, generator=generator)[:self.cap_max].sort().values
            keep = keep.to(params["xyz"].device)
            for name, p in params.items():
                params[name] = torch.nn.Parameter(p.detach()[keep].clone(),
                                                  requires_grad=p.requires_grad)
            logger.info("MCMC: %d starting points subsampled to --cap_max %d", count,
                        self.cap_max)
        xyz = params["xyz"].detach().cpu().double().numpy()
        distance = np.sqrt(np.maximum(nearest_neighbour_sq_dist(xyz), 1e-7)) * self.init_scale
        params["scaling"][:] = torch.from_numpy(np.log(distance)).to(params["scaling"])[:, None]
        params["opacity"].fill_(math.log(self.init_opa / (1.0 - self.init_opa)))

    def initialize_state(self, num_gaussians: int = 0,
                         device: Optional[torch.device] = None) -> dict[str, torch.Tensor]:
        """No per-Gaussian statistics: the decisions read opacities only."""
        return {}

    def step_pre_backward(self, render_pkg: dict[str, torch.Tensor]) -> None:
        """Nothing: no screen-space gradients are needed."""

    def regularization(self, params: Params) -> Optional[torch.Tensor]:
        """``opacity_reg · mean(opacity) + scale_reg · mean(scale)`` (activated values)."""
        return (self.opacity_reg * torch.sigmoid(params["opacity"]).mean()
                + self.scale_reg * torch.exp(params["scaling"]).mean())

    def step_post_backward(self, params: Params, optimizer: torch.optim.Optimizer,
                           state: dict[str, torch.Tensor], step: int, info: StepInfo) -> None:
        """Nothing: as in gsplat, the chain moves after the optimizer step."""

    @torch.no_grad()
    def step_post_optimizer(self, params: Params, optimizer: torch.optim.Optimizer,
                            state: dict[str, torch.Tensor], step: int, info: StepInfo) -> None:
        """Relocate the dead and grow towards ``cap_max`` on schedule; then add position noise.

        Args:
            params: the Gaussians, edited in place.
            optimizer: from ``training.optim.create_optimizer``, kept aligned with ``params``.
            state: unused (empty).
            step: current iteration (1-based).
            info: the step's xyz learning rate and the generator.
        """
        if (self.refine_start_iter < step < self.refine_stop_iter
                and step % self.refine_every == 0):
            dead = torch.sigmoid(params["opacity"][:, 0]) <= self.min_opacity
            relocated = relocate_dead(params, optimizer, dead, self.min_opacity, info.generator)
            count = num_rows(params)
            added = max(0, min(self.cap_max, int(GROWTH * count)) - count)
            if added:
                add_by_opacity(params, optimizer, added, self.min_opacity, info.generator)
            logger.debug("step %d: relocated %d, added %d, now %d Gaussians", step, relocated,
                         added, num_rows(params))
        inject_noise(params, info.lr * self.noise_lr, info.generator)
