"""Image losses of 3DGS training: L1 and SSIM (11×11 Gaussian window, σ = 1.5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_C1 = 0.01 ** 2  # (k1 · data range)², data range 1
SSIM_C2 = 0.03 ** 2


def l1_loss(network_output: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over every element (scalar)."""
    return (network_output - gt).abs().mean()


def gaussian_kernel_1d(window_size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """Normalized 1D Gaussian [window_size] on ``like``'s device and dtype."""
    coords = torch.arange(window_size, dtype=like.dtype, device=like.device) - window_size // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def gaussian_blur(x: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-channel Gaussian filter with zero 'same' padding.

    Equal to one 2D correlation with the ``window_size``² kernel ``outer(g, g)`` (what the
    original 3DGS runs), done as two 1D passes: about ``window_size / 2`` times fewer
    operations, which matters on CPU.

    Args:
        x: [B, C, H, W].

    Returns:
        [B, C, H, W].
    """
    channels, pad = x.shape[1], window_size // 2
    g = gaussian_kernel_1d(window_size, sigma, x)
    rows = g.view(1, 1, window_size, 1).expand(channels, 1, window_size, 1)
    cols = g.view(1, 1, 1, window_size).expand(channels, 1, 1, window_size)
    x = F.conv2d(x, rows, padding=(pad, 0), groups=channels)
    return F.conv2d(x, cols, padding=(0, pad), groups=channels)


def ssim_map(img1: torch.Tensor, img2: torch.Tensor, window_size: int = 11,
             sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM with zero 'same' padding (as the original 3DGS).

    Args:
        img1, img2: [C, H, W] or [B, C, H, W] images in [0, 1].

    Returns:
        SSIM map of the input's shape.
    """
    if img1.shape != img2.shape or img1.dim() not in (3, 4):
        raise ValueError(f"ssim: images must share a [C, H, W] or [B, C, H, W] shape, got "
                         f"{tuple(img1.shape)} and {tuple(img2.shape)}")
    single = img1.dim() == 3
    x, y = (img1[None], img2[None]) if single else (img1, img2)
    # One filtering call for the five local moments.
    moments = gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), window_size, sigma)
    mu_x, mu_y, xx, yy, xy = moments.chunk(5, dim=1)
    var_x = xx - mu_x ** 2
    var_y = yy - mu_y ** 2
    cov_xy = xy - mu_x * mu_y
    out = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2)
           / ((mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
    return out[0] if single else out


def ssim(img1: torch.Tensor, img2: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Mean SSIM (scalar, differentiable) of [C, H, W] or [B, C, H, W] images in [0, 1]."""
    return ssim_map(img1, img2, window_size).mean()
