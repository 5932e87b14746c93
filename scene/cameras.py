"""The training/rendering camera: pinhole intrinsics, OpenCV world-to-camera pose, GT image."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from utils.graphics_utils import focal2fov


@dataclass(frozen=True)
class DeferredImage:
    """A ground-truth image decoded on first use, so that views never rendered (render.py
    --skip_train) are never read. Its size and device are known up front.

    Attributes:
        load: returns the [3, height, width] float image in [0, 1] (any device).
    """

    width: int
    height: int
    device: torch.device
    load: Callable[[], torch.Tensor]


class Camera:
    """One view at the working resolution, tensors on one device.

    Attributes:
        uid, image_name: identity of the view.
        width, height: image size in pixels.
        fx, fy, cx, cy: intrinsics in pixels at this resolution (pixel centres at +0.5).
        FoVx, FoVy: full fields of view in radians.
        world_to_cam: [4, 4] float32 world-to-camera matrix, OpenCV axes (alias ``viewmat``).
        K: [3, 3] float32 intrinsic matrix.
        camera_center: [3] float32 camera centre in world coordinates.
        original_image: [3, H, W] float32 ground truth in [0, 1] (decoded on first access when
            the camera was built from a :class:`DeferredImage`).
    """

    def __init__(self, uid: int, image_name: str, world_to_cam: np.ndarray | torch.Tensor,
                 fx: float, fy: float, cx: float, cy: float,
                 image: torch.Tensor | DeferredImage) -> None:
        """Args:
            world_to_cam: [4, 4] world-to-camera matrix, OpenCV axes.
            image: [3, H, W] float ground truth in [0, 1], or a :class:`DeferredImage`; its
                device is the camera's device.
        """
        self.uid = uid
        self.image_name = image_name
        if isinstance(image, DeferredImage):
            self._image, self._deferred = None, image
            self.width, self.height, device = image.width, image.height, image.device
        else:
            self._check_shape(image.shape, image_name)
            self._image, self._deferred = image.float(), None
            self.height, self.width, device = int(image.shape[1]), int(image.shape[2]), image.device
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)
        self.FoVx = focal2fov(self.fx, self.width)
        self.FoVy = focal2fov(self.fy, self.height)
        self.world_to_cam = torch.as_tensor(np.asarray(world_to_cam), dtype=torch.float32,
                                            device=device)
        self.K = torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
                              dtype=torch.float32, device=device)
        rotation, translation = self.world_to_cam[:3, :3], self.world_to_cam[:3, 3]
        self.camera_center = -rotation.T @ translation

    @staticmethod
    def _check_shape(shape: torch.Size, image_name: str, size: tuple[int, int] | None = None
                     ) -> None:
        """Refuse an image that is not [3, H, W] (with (W, H) == ``size`` when given)."""
        if len(shape) != 3 or shape[0] != 3 or (size and (shape[2], shape[1]) != size):
            expected = f"[3, {size[1]}, {size[0]}]" if size else "[3, H, W]"
            raise ValueError(f"camera {image_name}: image must be {expected}, got {tuple(shape)}")

    @property
    def original_image(self) -> torch.Tensor:
        """[3, H, W] float32 ground truth in [0, 1], decoded on first access and kept."""
        if self._image is None:
            image = self._deferred.load()
            self._check_shape(image.shape, self.image_name, (self.width, self.height))
            self._image = image.float().to(self.device)
        return self._image

    @property
    def viewmat(self) -> torch.Tensor:
        """[4, 4] world-to-camera matrix (gsplat's name for ``world_to_cam``)."""
        return self.world_to_cam

    @property
    def device(self) -> torch.device:
        return self.world_to_cam.device

    def to(self, device: torch.device | str) -> "Camera":
        """A copy of this camera with every tensor on ``device`` (self when already there).

        An image not decoded yet stays deferred: the copy decodes it through this camera,
        which keeps it too.
        """
        device = torch.device(device)
        if device == self.device:
            return self
        moved = copy.copy(self)
        for name in ("world_to_cam", "K", "camera_center"):
            setattr(moved, name, getattr(self, name).to(device))
        if self._image is not None:
            moved._image = self._image.to(device)
        else:
            moved._deferred = DeferredImage(self.width, self.height, device,
                                            lambda: self.original_image)
        return moved

    def __repr__(self) -> str:
        return (f"Camera(uid={self.uid}, image_name={self.image_name!r}, {self.width}x"
                f"{self.height}, fx={self.fx:.2f}, fy={self.fy:.2f}, cx={self.cx:.2f}, "
                f"cy={self.cy:.2f}, device={self.device})")
