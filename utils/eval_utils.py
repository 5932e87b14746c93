"""Evaluation of a renderer on a list of views: mean L1 and PSNR against the ground truth."""
from __future__ import annotations

from typing import Callable, Optional, Protocol, Sequence

import torch

from utils.image_utils import psnr
from utils.loss_utils import l1_loss


class _View(Protocol):
    original_image: torch.Tensor  # [3, H, W] in [0, 1]


@torch.no_grad()
def evaluate_views(render_fn: Callable[[_View], torch.Tensor], cameras: Sequence[_View],
                   on_view: Optional[Callable[[int, _View, torch.Tensor, torch.Tensor], None]]
                   = None) -> dict[str, float]:
    """Render each camera and average L1 and PSNR over the views (renders clamped to [0, 1]).

    Args:
        render_fn: camera -> [3, H, W] rendered image (e.g. a closure over ``render``;
            the codec finetune passes ``ft_render``).
        cameras: views holding ``original_image`` [3, H, W] in [0, 1].
        on_view: optional ``(index, camera, image, gt)`` callback, e.g. to log a few images.

    Returns:
        ``{"l1": mean L1, "psnr": mean PSNR in dB}``.

    Raises:
        ValueError: ``cameras`` is empty.
    """
    if len(cameras) == 0:
        raise ValueError("evaluate_views: cameras is empty")
    l1_sum, psnr_sum = 0.0, 0.0
    for index, camera in enumerate(cameras):
        image = render_fn(camera).clamp(0.0, 1.0)
        gt = camera.original_image.to(image.device).clamp(0.0, 1.0)
        l1_sum += float(l1_loss(image, gt))
        psnr_sum += float(psnr(image, gt))
        if on_view is not None:
            on_view(index, camera, image, gt)
    return {"l1": l1_sum / len(cameras), "psnr": psnr_sum / len(cameras)}
