"""Building ``Camera`` objects from ``CameraInfo`` records: image decoding, background
compositing, the 3DGS ``-r`` resolution rule and cameras.json entries."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from scene.cameras import Camera, DeferredImage
from scene.dataset_readers import CameraInfo
from utils.graphics_utils import camera_center
from utils.image_utils import image_size, load_image

MAX_AUTO_WIDTH = 1600  # -r -1 downscales wider images to this width


def target_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """Working image size for ``-r`` as in 3DGS: 1|2|4|8 divide (rounded), -1 caps the width at
    1600 px, any other positive value is a target width (sizes truncated).

    Raises:
        ValueError: ``resolution`` is 0 or below -1.
    """
    if resolution in (1, 2, 4, 8):
        return round(width / resolution), round(height / resolution)
    if resolution == -1:
        scale = width / MAX_AUTO_WIDTH if width > MAX_AUTO_WIDTH else 1.0
    elif resolution > 0:
        scale = width / resolution
    else:
        raise ValueError(f"-r/--resolution must be 1, 2, 4, 8, -1 or a target width in pixels, "
                         f"got {resolution}")
    return int(width / scale), int(height / scale)


def composite_rgb(image: torch.Tensor, white_background: bool) -> torch.Tensor:
    """[C, H, W] image in [0, 1] (C = 1..4, alpha last when C is 2 or 4) → [3, H, W] RGB,
    transparent pixels composited on white or black."""
    if image.shape[0] in (2, 4):
        alpha = image[-1:]
        image = image[:-1] * alpha + float(white_background) * (1.0 - alpha)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize (PIL, float per channel) of [3, H, W] to (width, height)."""
    channels = [np.asarray(Image.fromarray(c.numpy()).resize(size, Image.Resampling.BICUBIC))
                for c in image]
    return torch.from_numpy(np.stack(channels)).clamp_(0.0, 1.0)


def load_camera(info: CameraInfo, resolution: int, white_background: bool,
                device: torch.device | str) -> Camera:
    """Build the working-resolution ``Camera`` of ``info``: intrinsics scale with the image.

    Only the image's header is read here; its pixels are decoded (composited, resized) on the
    first use of ``original_image``, which raises then if they are unreadable.

    Raises:
        FileNotFoundError: the image is missing.
        ValueError: the image's header is unreadable or its aspect ratio differs from the
            camera's.
    """
    width, height = image_size(info.image_path)
    if abs(width / info.width - height / info.height) > 0.01:
        raise ValueError(f"{info.image_path}: image is {width}x{height} but its camera is "
                         f"{info.width}x{info.height} (different aspect ratio)")
    size = target_size(width, height, resolution)

    def decode() -> torch.Tensor:
        image = composite_rgb(load_image(info.image_path), white_background)
        return (_resize(image.contiguous(), size) if size != (width, height) else image).contiguous()

    sx, sy = size[0] / info.width, size[1] / info.height
    return Camera(info.uid, info.image_name, info.world_to_cam, info.fx * sx, info.fy * sy,
                  info.cx * sx, info.cy * sy, DeferredImage(*size, torch.device(device), decode))


def camera_to_JSON(id: int, info: CameraInfo) -> dict:
    """cameras.json entry of the original 3DGS (full-resolution intrinsics) plus cx, cy:
    position = camera centre, rotation = camera-to-world 3×3."""
    return {
        "id": id,
        "img_name": info.image_name,
        "width": info.width,
        "height": info.height,
        "position": camera_center(info.world_to_cam).tolist(),
        "rotation": info.world_to_cam[:3, :3].T.tolist(),
        "fy": info.fy,
        "fx": info.fx,
        "cx": info.cx,
        "cy": info.cy,
    }
