"""A ring of cameras around a model, for measuring a model that has no scene (no photographs).

Where a codec is measured on a bare PLY, its fidelity is the PSNR of the decoded model's renders
against the uncompressed model's renders from the same cameras (``benchmarks/bench_peers.py``).
The ring comes from the model's own positions, so any PLY gets one:

* centre: the median position (robust to floaters);
* radius r: the ``quantile`` (default 0.9) of the distances to the centre, so that the bulk of
  the model, not its farthest floater, fills the view;
* axis (up): the direction in which the Gaussians within r spread least (the smallest
  principal axis: the normal of a captured scene's ground, the thin side of an object),
  pointing to the side where their heights along it have their long tail (positive third
  central moment): what stands on a ground plane is above it, whatever way the file's axes
  point (PlayCanvas stores scenes Y-down); a symmetric model (third moment 0) has its axis's
  largest component positive. So the ring views a scene upright and turns with the model;
* cameras: ``count`` views at equal azimuth steps, ``elevation_deg`` above the ring plane, at
  distance r / sin(fov / 2) from the centre, so that the sphere of radius r just fits the
  square field of view, each looking at the centre with the axis pointing up in the image.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from scene.cameras import Camera
from utils.graphics_utils import fov2focal, look_at


def ring_poses(xyz: np.ndarray | torch.Tensor, count: int = 8, fov_deg: float = 50.0,
               elevation_deg: float = 25.0, quantile: float = 0.9) -> list[np.ndarray]:
    """World-to-camera matrices of the ring around ``xyz`` (module docstring).

    Args:
        xyz: [N, 3] Gaussian centres.
        count: number of cameras.
        fov_deg: full field of view of the square images, in degrees.
        elevation_deg: height of the cameras above the ring plane, in degrees (-90, 90).
        quantile: share of the Gaussians the radius encloses, in (0, 1].

    Returns:
        ``count`` [4, 4] float64 world-to-camera matrices (OpenCV axes).

    Raises:
        ValueError: no Gaussian, non-finite positions, or a parameter out of range.
    """
    points = np.asarray(xyz.detach().cpu() if isinstance(xyz, torch.Tensor) else xyz,
                        dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"ring_poses: expected [N, 3] positions with N > 0, got "
                         f"{points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("ring_poses: non-finite positions")
    if count < 1 or not 0 < fov_deg < 180 or not -90 < elevation_deg < 90 \
            or not 0 < quantile <= 1:
        raise ValueError(f"ring_poses: count {count} >= 1, fov {fov_deg} in (0, 180), "
                         f"elevation {elevation_deg} in (-90, 90) and quantile {quantile} in "
                         f"(0, 1] are required")
    centre = np.median(points, axis=0)
    distances = np.linalg.norm(points - centre, axis=1)
    radius = float(np.quantile(distances, quantile))
    if not radius > 0:  # every Gaussian at one point: any positive scale will do
        radius = 1.0
    inner = points[distances <= radius] - centre
    _, vectors = np.linalg.eigh(inner.T @ inner)  # ascending eigenvalues
    axis = vectors[:, 0]
    heights = inner @ axis
    skew = float(((heights - heights.mean()) ** 3).mean())
    # the skew is a difference of cubes: below float64 rounding of its terms it has no sign
    if abs(skew) <= 1e-9 * float((np.abs(heights) ** 3).mean()):
        skew = float(axis[np.argmax(np.abs(axis))])
    axis = axis if skew > 0 else -axis
    # two unit vectors spanning the ring plane
    helper = np.eye(3)[np.argmin(np.abs(axis))]
    first = np.cross(axis, helper)
    first /= np.linalg.norm(first)
    second = np.cross(axis, first)
    distance = radius / math.sin(math.radians(fov_deg) / 2.0)
    elevation = math.radians(elevation_deg)
    poses = []
    for index in range(count):
        azimuth = 2.0 * math.pi * index / count
        direction = (math.cos(elevation) * (math.cos(azimuth) * first + math.sin(azimuth) * second)
                     + math.sin(elevation) * axis)
        poses.append(look_at(centre + distance * direction, centre, axis))
    return poses


def ring_cameras(xyz: np.ndarray | torch.Tensor, count: int = 8, size: int = 256,
                 fov_deg: float = 50.0, elevation_deg: float = 25.0, quantile: float = 0.9,
                 images: Optional[Sequence[torch.Tensor]] = None,
                 device: torch.device | str = "cpu") -> list[Camera]:
    """The ring of :func:`ring_poses` as square :class:`Camera` s named ``ring_000``, ...

    Args:
        xyz, count, fov_deg, elevation_deg, quantile: see :func:`ring_poses`.
        size: width and height of the images in pixels.
        images: one [3, size, size] image per camera to serve as its ground truth (e.g. the
            uncompressed model's renders); None gives black images (a ring has no photographs).
        device: device of the cameras (``images`` are moved there).

    Raises:
        ValueError: see :func:`ring_poses`; also a size below 1 or images that do not match.
    """
    if size < 1:
        raise ValueError(f"ring_cameras: size must be >= 1, got {size}")
    poses = ring_poses(xyz, count, fov_deg, elevation_deg, quantile)
    if images is not None and (len(images) != count or any(
            tuple(image.shape) != (3, size, size) for image in images)):
        raise ValueError(f"ring_cameras: expected {count} images of shape (3, {size}, {size}), "
                         f"got {[tuple(image.shape) for image in images]}")
    focal = fov2focal(math.radians(fov_deg), size)
    return [Camera(index, f"ring_{index:03d}", pose, focal, focal, size / 2.0, size / 2.0,
                   torch.zeros(3, size, size, device=device) if images is None
                   else images[index].to(device))
            for index, pose in enumerate(poses)]
