"""Real spherical harmonics (degree 0..3) used for view-dependent Gaussian colour.

Coefficients are stored per Gaussian as ``sh [N, K, 3]`` with ``K = (deg + 1) ** 2`` ordered
by band (l = 0, then l = 1: m = -1, 0, 1, ...), the layout of 3DGS and gsplat.
"""
from __future__ import annotations

import math

import torch

SH_C0: float = 0.28209479177387814
SH_C1: float = 0.4886025119029199
SH_C2: tuple[float, ...] = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3: tuple[float, ...] = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_degree_of(coefficients: int) -> int | None:
    """SH degree d with (d + 1)² == ``coefficients`` (K), or None if there is none."""
    degree = math.isqrt(max(coefficients, 0)) - 1
    return degree if degree >= 0 and (degree + 1) ** 2 == coefficients else None


def sh_basis(deg: int, dirs: torch.Tensor) -> torch.Tensor:
    """Real SH basis values for unit directions.

    Args:
        deg: SH degree in 0..3.
        dirs: [N, 3] unit view directions.

    Returns:
        [N, (deg + 1) ** 2] basis values in band order.
    """
    if not 0 <= deg <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {deg}")
    x, y, z = dirs.unbind(-1)
    cols = [torch.full_like(x, SH_C0)]
    if deg >= 1:
        cols += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if deg >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        cols += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if deg >= 3:
        cols += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(cols, dim=-1)


def eval_sh(deg: int, sh: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Evaluate SH colour (without the +0.5 offset) along unit directions.

    Args:
        deg: SH degree in 0..3; only the first ``(deg + 1) ** 2`` coefficients are used.
        sh: [N, K, 3] coefficients, K >= (deg + 1) ** 2.
        dirs: [N, 3] unit view directions (from the camera centre towards the Gaussian).

    Returns:
        [N, 3] colour.

    Raises:
        ValueError: deg outside 0..3 or too few coefficients.
    """
    n_coeffs = (deg + 1) ** 2
    if sh.dim() != 3 or sh.shape[-1] != 3 or sh.shape[1] < n_coeffs:
        raise ValueError(f"sh must be [N, >={n_coeffs}, 3] for degree {deg}, got {tuple(sh.shape)}")
    basis = sh_basis(deg, dirs)
    return (basis[..., None] * sh[:, :n_coeffs]).sum(dim=1)


def RGB2SH(rgb: torch.Tensor) -> torch.Tensor:
    """Convert RGB in [0, 1] to the DC SH coefficient (any shape)."""
    return (rgb - 0.5) / SH_C0


def SH2RGB(sh: torch.Tensor) -> torch.Tensor:
    """Convert a DC SH coefficient to RGB (any shape)."""
    return sh * SH_C0 + 0.5
