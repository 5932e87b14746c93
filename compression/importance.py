"""Importance scores and importance pruning (CODEC.md §2).

Score_i = A_i · (V_i / V_ref)^β where A_i is Gaussian i's total blending weight Σ α·T over every
training view and pixel, V_i the product of its three activated scales and V_ref the 10th
percentile of the volumes. A_i is obtained from any differentiable rasterizer: rendering colour
1 in one channel with a black background makes that channel's image Σ_i c_i·α_i·T_i, so its
sum's gradient with respect to c_i is exactly Σ_pixels α_i·T_i.

Without cameras (a PLY compressed without its scene) A_i is the activated opacity (CODEC.md §2,
MesonGS: the seed and official layouts), or, for layouts that ask for it (compact), what a view
from a random direction sees of the Gaussian, occlusion aside: its opacity times its
ellipsoid's mean projected area over all directions (Cauchy: a quarter of its surface), from
its scales alone. It does not depend on how the model is turned, and it keeps the large faint
Gaussians that together make a surface, which opacity alone ranks lowest. Views over a sphere
would see occlusion, but at minutes per view of a 500,000-Gaussian model on a CPU, and what
none of them sees would score 0 (pruned outright).
"""
from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from gaussian_renderer import rasterize

logger = logging.getLogger(__name__)

V_REF_QUANTILE = 0.1


def blending_weights(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                     opacities: torch.Tensor, cameras: Sequence, *,
                     backend: str = "auto") -> torch.Tensor:
    """A_i = Σ over cameras and pixels of Gaussian i's blending weight α·T.

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] wxyz rotations (need not be normalized).
        scales: [N, 3] activated scales.
        opacities: [N] activated opacities.
        cameras: training cameras, each with ``world_to_cam`` [4, 4] (OpenCV), ``K`` [3, 3],
            ``width`` and ``height``.
        backend: rasterizer backend name.

    Returns:
        [N] accumulated weights, dtype of ``means``; cameras are visited in the given order
        and summed sequentially (deterministic).
    """
    means, quats, scales, opacities = (t.detach() for t in (means, quats, scales, opacities))
    device, dtype = means.device, means.dtype
    total = torch.zeros(means.shape[0], device=device, dtype=dtype)
    background = torch.zeros(3, device=device, dtype=dtype)
    # a bar over the views (one render + backward each, seconds at millions of Gaussians),
    # shown when this module logs at INFO (not under --quiet)
    for camera in tqdm(cameras, desc="Importance", dynamic_ncols=True,
                       disable=not logger.isEnabledFor(logging.INFO)):
        colors = torch.zeros(means.shape[0], 3, device=device, dtype=dtype)
        colors[:, 0] = 1.0
        colors.requires_grad_(True)
        result = rasterize(means, quats, scales, opacities, colors,
                           camera.world_to_cam.to(device=device, dtype=dtype),
                           camera.K.to(device=device, dtype=dtype), camera.width, camera.height,
                           background=background, backend=backend)
        (grad,) = torch.autograd.grad(result.image[0].sum(), colors)
        total += grad[:, 0]
    return total


def compute_importance(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                       opacities: torch.Tensor, cameras: Optional[Sequence], *,
                       backend: str = "auto", beta: float = 0.1,
                       area: bool = False) -> torch.Tensor:
    """Importance score per Gaussian, A · (V / V_ref)^β.

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] wxyz rotations.
        scales: [N, 3] activated scales.
        opacities: [N] or [N, 1] activated opacities.
        cameras: training cameras (see :func:`blending_weights`); None or empty: A is the
            activated opacity (a PLY compressed without its scene), times
            :func:`mean_projected_area` with ``area``.
        backend: rasterizer backend name.
        beta: volume exponent β (``--imp_beta``).
        area: without cameras, weigh the opacity by the mean projected area.

    Returns:
        [N] non-negative scores, dtype of ``means``; 0 for a Gaussian no view sees.

    Raises:
        ValueError: inconsistent shapes or N = 0.
    """
    n = means.shape[0]
    opacities = opacities.reshape(-1)
    if n == 0 or means.shape != (n, 3) or quats.shape != (n, 4) or scales.shape != (n, 3) \
            or opacities.shape != (n,):
        raise ValueError(f"compute_importance: expected means [N,3], quats [N,4], scales [N,3], "
                         f"opacities [N] with N > 0; got {list(means.shape)}, "
                         f"{list(quats.shape)}, {list(scales.shape)}, {list(opacities.shape)}")
    if cameras:
        weights = blending_weights(means, quats, scales, opacities, cameras, backend=backend)
    else:
        weights = opacities.detach().to(means.dtype)
        if area:
            weights = weights * mean_projected_area(scales.detach())
    volumes = scales.detach().to(means.dtype).prod(dim=1)
    v_ref = reference_volume(volumes).clamp_min(torch.finfo(volumes.dtype).tiny)
    return weights * (volumes / v_ref).pow(beta)


def mean_projected_area(scales: torch.Tensor) -> torch.Tensor:
    """[N] mean area, over all view directions, of the orthographic projection of the
    ellipsoids with semi-axes ``scales`` [N, 3]: a quarter of their surface (Cauchy's formula
    for convex bodies), the surface by Knud Thomsen's approximation (relative error ≤ 1.1 %),
    4π·(((ab)^p + (ac)^p + (bc)^p) / 3)^(1/p) with p = 1.6075. Exact for spheres (π r²)."""
    a, b, c = scales.to(torch.float64).unbind(dim=1)
    p = 1.6075
    mean = (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3.0) ** (1.0 / p)
    return (math.pi * mean).to(scales.dtype)


def reference_volume(volumes: torch.Tensor) -> torch.Tensor:
    """V_ref, the 10th percentile of ``volumes`` [N] (linear interpolation, like
    ``torch.quantile``, without its size limit). Scales are exponentials, so V_ref > 0 unless
    the float type underflowed; the caller clamps it to stay finite."""
    ordered = volumes.sort().values
    position = V_REF_QUANTILE * (ordered.shape[0] - 1)
    low = math.floor(position)
    high = min(low + 1, ordered.shape[0] - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def prune_mask(scores: torch.Tensor, percent: float) -> torch.Tensor:
    """Which Gaussians survive importance pruning.

    Removes every Gaussian with score 0, then the ⌊percent·N⌋ lowest-scoring of the rest
    (N = the count before pruning; ties broken by index, lower index removed first).
    ``percent`` is taken as the decimal it is written as (0.29·100 removes 29, not 28).

    Args:
        scores: [N] non-negative finite scores.
        percent: fraction in [0, 1].

    Returns:
        [N] bool keep mask on the scores' device.

    Raises:
        ValueError: ``percent`` outside [0, 1], or scores not a 1-D non-negative finite tensor.
    """
    if not 0.0 <= percent <= 1.0:
        raise ValueError(f"percent must be in [0, 1], got {percent}")
    if scores.ndim != 1 or not bool(torch.isfinite(scores).all()) or bool((scores < 0).any()):
        raise ValueError("scores must be a 1-D tensor of finite non-negative values")
    n = scores.shape[0]
    n_remove = math.floor(Fraction(repr(float(percent))) * n)
    keep = scores > 0
    order = torch.sort(scores, stable=True).indices
    visible = order[keep[order]]
    keep[visible[:n_remove]] = False
    logger.info("importance pruning: %d of %d Gaussians kept (%d never visible)",
                int(keep.sum()), n, int(n - (scores > 0).sum()))
    return keep
