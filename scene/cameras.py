"""The training/rendering camera: pinhole intrinsics, OpenCV world-to-camera pose, GT image."""
from __future__ import annotations

import copy

import numpy as np
import torch

from utils.graphics_utils import focal2fov


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
        original_image: [3, H, W] float32 ground truth in [0, 1].
    """

    def __init__(self, uid: int, image_name: str, world_to_cam: np.ndarray | torch.Tensor,
                 fx: float, fy: float, cx: float, cy: float, image: torch.Tensor) -> None:
        """Args:
            world_to_cam: [4, 4] world-to-camera matrix, OpenCV axes.
            image: [3, H, W] float ground truth in [0, 1]; its device is the camera's device.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"camera {image_name}: image must be [3, H, W], got "
                             f"{tuple(image.shape)}")
        self.uid = uid
        self.image_name = image_name
        self.height, self.width = int(image.shape[1]), int(image.shape[2])
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)
        self.FoVx = focal2fov(self.fx, self.width)
        self.FoVy = focal2fov(self.fy, self.height)
        self.original_image = image.float()
        device = image.device
        self.world_to_cam = torch.as_tensor(np.asarray(world_to_cam), dtype=torch.float32,
                                            device=device)
        self.K = torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
                              dtype=torch.float32, device=device)
        rotation, translation = self.world_to_cam[:3, :3], self.world_to_cam[:3, 3]
        self.camera_center = -rotation.T @ translation

    @property
    def viewmat(self) -> torch.Tensor:
        """[4, 4] world-to-camera matrix (gsplat's name for ``world_to_cam``)."""
        return self.world_to_cam

    @property
    def device(self) -> torch.device:
        return self.original_image.device

    def to(self, device: torch.device | str) -> "Camera":
        """A copy of this camera with every tensor on ``device`` (self when already there)."""
        if torch.device(device) == self.device:
            return self
        moved = copy.copy(self)
        for name in ("original_image", "world_to_cam", "K", "camera_center"):
            setattr(moved, name, getattr(self, name).to(device))
        return moved

    def __repr__(self) -> str:
        return (f"Camera(uid={self.uid}, image_name={self.image_name!r}, {self.width}x"
                f"{self.height}, fx={self.fx:.2f}, fy={self.fy:.2f}, cx={self.cx:.2f}, "
                f"cy={self.cy:.2f}, device={self.device})")
