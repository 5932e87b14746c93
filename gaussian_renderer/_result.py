"""The record every rasterization backend returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Constants of gsplat's CUDA rasterizer (RENDERING.md); every backend but inria follows them.
TILE_SIZE: int = 16
NEAR_PLANE: float = 0.01
FAR_PLANE: float = 1e10
EPS2D: float = 0.3
ALPHA_MIN: float = 1.0 / 255.0
ALPHA_MAX: float = 0.999
T_MIN: float = 1e-4
MAX_EXTENT: float = 3.33


@dataclass
class RenderResult:
    """Output of :func:`gaussian_renderer.rasterize`.

    Attributes:
        image: [3, H, W] rendered colour (colour + T * background).
        alpha: [1, H, W] accumulated opacity 1 - T.
        radii: [N] int32 footprint radius in pixels (larger axis), 0 when culled.
        means2d: [N, 2] projected centres in pixels (0 when culled); part of the autograd graph.
        depths: [N] camera-space z (0 when culled).
    """

    image: torch.Tensor
    alpha: torch.Tensor
    radii: torch.Tensor
    means2d: torch.Tensor
    depths: torch.Tensor
