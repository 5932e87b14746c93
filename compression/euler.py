"""Quaternion <-> Euler angle conversion (CODEC.md §4), differentiable and NaN-free.

Conventions: quaternions are wxyz (3DGS), Euler angles are (roll, pitch, yaw) in radians and
``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, which equals the quaternion's rotation matrix
(``utils.general_utils.build_rotation``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["quat_to_euler", "euler_to_quat", "euler_to_rotation"]


def _check_last_dim(name: str, tensor: Tensor, size: int) -> None:
    if tensor.ndim < 1 or tensor.shape[-1] != size:
        raise ValueError(f"{name}: expected shape [..., {size}], got {tuple(tensor.shape)}")


def _safe_atan2(y: Tensor, x: Tensor) -> Tensor:
    """atan2 whose gradient is 0 (not NaN) at the singular point y = x = 0."""
    singular = (x == 0) & (y == 0)
    return torch.atan2(y, torch.where(singular, torch.ones_like(x), x))


def _normalize_quat(quats: Tensor) -> Tensor:
    """Unit quaternions; a zero quaternion stays zero (finite value and gradient)."""
    tiny = torch.finfo(quats.dtype).tiny
    norm_sq = (quats * quats).sum(-1, keepdim=True)
    return quats * torch.rsqrt(norm_sq.clamp_min(tiny))


def quat_to_euler(quats: Tensor) -> Tensor:
    """Euler angles of (not necessarily normalized) quaternions.

    Args:
        quats: [..., 4] wxyz quaternions, raw (normalized here; a zero quaternion gives 0s).

    Returns:
        [..., 3] roll, pitch, yaw in radians; pitch in (-pi/2, pi/2) (clamped by eps of the
        dtype so that the gradient stays finite at the poles).
    """
    _check_last_dim("quats", quats, 4)
    w, x, y, z = _normalize_quat(quats).unbind(-1)
    roll = _safe_atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    eps = torch.finfo(quats.dtype).eps
    s = (2 * (w * y - x * z)).clamp(-1 + eps, 1 - eps)
    pitch = 2 * torch.atan2(torch.sqrt(1 + s), torch.sqrt(1 - s)) - math.pi / 2
    yaw = _safe_atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return torch.stack([roll, pitch, yaw], dim=-1)


def euler_to_quat(euler: Tensor) -> Tensor:
    """Unit wxyz quaternion of ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``.

    Args:
        euler: [..., 3] roll, pitch, yaw in radians.

    Returns:
        [..., 4] unit wxyz quaternions.
    """
    _check_last_dim("euler", euler, 3)
    cr, cp, cy = torch.cos(euler * 0.5).unbind(-1)
    sr, sp, sy = torch.sin(euler * 0.5).unbind(-1)
    w = cr * cp * cy + sr * sp * sy
    x = sr * cp * cy - cr * sp * sy
    y = cr * sp * cy + sr * cp * sy
    z = cr * cp * sy - sr * sp * cy
    return torch.stack([w, x, y, z], dim=-1)


def euler_to_rotation(euler: Tensor) -> Tensor:
    """Rotation matrices ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``.

    Args:
        euler: [..., 3] roll, pitch, yaw in radians.

    Returns:
        [..., 3, 3] rotation matrices.
    """
    _check_last_dim("euler", euler, 3)
    cr, cp, cy = torch.cos(euler).unbind(-1)
    sr, sp, sy = torch.sin(euler).unbind(-1)
    rows = [
        torch.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], dim=-1),
        torch.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], dim=-1),
        torch.stack([-sp, cp * sr, cp * cr], dim=-1),
    ]
    return torch.stack(rows, dim=-2)
