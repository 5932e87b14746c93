"""Quaternion <-> Euler angle conversion (CODEC.md §4), differentiable and NaN-free.

Conventions: quaternions are wxyz (3DGS), Euler angles are (roll, pitch, yaw) in radians and
``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, which equals the quaternion's rotation matrix
(``utils.general_utils.build_rotation``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["quat_to_euler", "euler_to_quat", "euler_to_quat_exact", "euler_to_rotation",
           "half_angle_cos_sin"]

# Reproducible half-angle cos/sin (docs/COMPACT_FORMAT.md §7): Cody–Waite reduction by π/2
# (π/2 split into a 33-bit head, so k·head is exact for |k| < 2^20, and a tail), then Taylor
# polynomials on |r| ≤ π/4; plain float64 multiplies and adds in a fixed order, so every IEEE
# machine and language (numpy, torch CPU/GPU, JavaScript) computes the same bits.
_TWO_OVER_PI = float.fromhex("0x1.45f306dc9c883p-1")
_PIO2_HIGH = float.fromhex("0x1.921fb544p+0")
_PIO2_LOW = float.fromhex("0x1.0b4611a626331p-34")


def _inverse_factorials(count: int) -> list[float]:
    """1/n! for n = 0..count-1 in float64, each the previous one divided by n."""
    values = [1.0]
    for n in range(1, count):
        values.append(values[-1] / n)
    return values


#: rows of angles :func:`euler_to_quat_exact` converts at a time: the float64 temporaries of
#: one chunk stay in the caches (half the time at a million rows; elementwise: same bits)
_EXACT_CHUNK_ROWS = 65536

_INVERSE_FACTORIALS = _inverse_factorials(19)
_SIN_COEFFICIENTS = [(-1.0) ** i * _INVERSE_FACTORIALS[2 * i + 1] for i in range(1, 9)]
_COS_COEFFICIENTS = [(-1.0) ** i * _INVERSE_FACTORIALS[2 * i] for i in range(1, 10)]


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


def _horner(coefficients: list[float], z: Tensor) -> Tensor:
    """c[0] + z·(c[1] + z·(…)), innermost first (one multiply and one add per step)."""
    h = torch.full_like(z, coefficients[-1])
    for coefficient in reversed(coefficients[:-1]):
        h = z * h + coefficient
    return h


def half_angle_cos_sin(angles: Tensor) -> tuple[Tensor, Tensor]:
    """cos(a/2) and sin(a/2) in the angles' dtype, the same bits on every machine
    (docs/COMPACT_FORMAT.md §7): computed in float64 as stated there, rounded once (float32
    angles: the compact decoder's case). Differentiable (the reduction's integer part has
    zero gradient)."""
    t = angles.to(torch.float64) * 0.5
    k = torch.floor(t * _TWO_OVER_PI + 0.5)
    r = ((t - k * _PIO2_HIGH) - k * _PIO2_LOW).clamp(-1.0, 1.0)
    z = r * r
    s = r + r * (z * _horner(_SIN_COEFFICIENTS, z))
    c = z * _horner(_COS_COEFFICIENTS, z) + 1.0
    quadrant = k - 4.0 * torch.floor(k / 4.0)
    cos = torch.where(quadrant == 0, c, torch.where(quadrant == 1, -s,
                                                    torch.where(quadrant == 2, -c, s)))
    sin = torch.where(quadrant == 0, s, torch.where(quadrant == 1, c,
                                                    torch.where(quadrant == 2, -s, -c)))
    return cos.to(angles.dtype), sin.to(angles.dtype)


def euler_to_quat_exact(euler: Tensor) -> Tensor:
    """:func:`euler_to_quat` of float32 angles, reproducible bit for bit on every machine (the
    compact layout's decoder, docs/COMPACT_FORMAT.md §7): :func:`half_angle_cos_sin`, then
    float32 products and sums in the order written (no fused multiply-add).

    Args:
        euler: [..., 3] roll, pitch, yaw in radians (float32 for the compact decoder).

    Returns:
        [..., 4] wxyz quaternions in the same dtype (unit up to its rounding).
    """
    _check_last_dim("euler", euler, 3)
    rows = euler.reshape(-1, 3)
    quats = torch.cat([_exact_quats(part) for part in rows.split(_EXACT_CHUNK_ROWS)])
    return quats.reshape(*euler.shape[:-1], 4)


def _exact_quats(euler: Tensor) -> Tensor:
    """:func:`euler_to_quat_exact` of [R, 3] angles."""
    cos, sin = half_angle_cos_sin(euler)
    cr, cp, cy = cos.unbind(-1)
    sr, sp, sy = sin.unbind(-1)
    w = (cr * cp) * cy + (sr * sp) * sy
    x = (sr * cp) * cy - (cr * sp) * sy
    y = (cr * sp) * cy + (sr * cp) * sy
    z = (cr * cp) * sy - (sr * sp) * cy
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
