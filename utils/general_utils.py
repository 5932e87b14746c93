"""Small math helpers of 3DGS: activations' inverses, the learning-rate schedule, rotations."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def inverse_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Logit, the inverse of ``torch.sigmoid``: log(x / (1 - x)) for x in (0, 1)."""
    return torch.log(x / (1 - x))


def get_expon_lr_func(lr_init: float, lr_final: float, lr_delay_steps: int = 0,
                      lr_delay_mult: float = 1.0, max_steps: int = 1_000_000
                      ) -> Callable[[int], float]:
    """Log-linear learning-rate decay from ``lr_init`` (step 0) to ``lr_final`` (``max_steps``).

    With ``lr_delay_steps > 0`` the rate is additionally multiplied by
    ``lr_delay_mult + (1 - lr_delay_mult) * sin(pi/2 * clip(step / lr_delay_steps, 0, 1))``,
    a smooth warm-up (the schedule of the original 3DGS / Plenoxels). Negative steps, and a
    schedule whose two ends are zero, give 0.
    """
    def schedule(step: int) -> float:
        if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
            return 0.0
        if lr_delay_steps > 0:
            ramp = np.sin(0.5 * np.pi * np.clip(step / lr_delay_steps, 0.0, 1.0))
            delay_rate = lr_delay_mult + (1.0 - lr_delay_mult) * ramp
        else:
            delay_rate = 1.0
        t = np.clip(step / max_steps, 0.0, 1.0)
        return float(delay_rate * np.exp(np.log(lr_init) * (1.0 - t) + np.log(lr_final) * t))

    return schedule


def build_rotation(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of quaternions (normalized here): the project's only quaternion →
    matrix conversion (rasterizer, densification, COLMAP cameras, Euler-angle tests).

    Args:
        quats: [..., 4] wxyz quaternions, not necessarily unit length.

    Returns:
        [..., 3, 3] rotation matrices (column vectors: x_rotated = R @ x).
    """
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*quats.shape[:-1], 3, 3)


def build_scaling_rotation(scales: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """``R @ diag(s)``, the factor L of a Gaussian covariance ``L Lᵀ``.

    Args:
        scales: [N, 3] activated (positive) scales.
        quats: [N, 4] wxyz quaternions.

    Returns:
        [N, 3, 3].
    """
    return build_rotation(quats) * scales[..., None, :]
