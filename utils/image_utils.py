"""Image metrics and PNG I/O: PSNR, loading as float tensors, atomic PNG writes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.system_utils import atomic_path


def psnr(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, data range 1, MSE averaged over every channel and pixel.

    Args:
        img1, img2: [C, H, W] or [B, C, H, W].

    Returns:
        A scalar for [C, H, W] inputs, [B] for batches.
    """
    if img1.shape != img2.shape or img1.dim() not in (3, 4):
        raise ValueError(f"psnr: images must share a [C, H, W] or [B, C, H, W] shape, got "
                         f"{tuple(img1.shape)} and {tuple(img2.shape)}")
    mse = ((img1 - img2) ** 2).flatten(start_dim=-3).mean(dim=-1)
    return 10 * torch.log10(1.0 / mse)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, read from its header (the pixels are not decoded).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not an image format PIL knows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            return img.size
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as float32 [C, H, W] in [0, 1] (C = 1, 2, 3 or 4 as stored).

    Palette and other modes are converted to RGB(A).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "LA", "RGB", "RGBA"):
                has_alpha = "A" in img.getbands() or "transparency" in img.info
                img = img.convert("RGBA" if has_alpha else "RGB")
            array = np.array(img, dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def save_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a [C, H, W] image in [0, 1] (C = 1, 3 or 4) as an 8-bit PNG, atomically.

    Values are clamped and rounded half up (``floor(255 x + 0.5)``, as torchvision's save_image).
    """
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(f"save_png({path}): image must be [1|3|4, H, W], got {tuple(image.shape)}")
    pixels = (image.detach() * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    array = pixels.permute(1, 2, 0).cpu().numpy()
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(tmp, format="PNG")
    return path
