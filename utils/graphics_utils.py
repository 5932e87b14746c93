"""Camera geometry helpers (OpenCV axes: +x right, +y down, +z forward) and the point-cloud record."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from utils.general_utils import build_rotation


class BasicPointCloud(NamedTuple):
    """Initial point cloud of a scene (numpy, float).

    Attributes:
        points: [P, 3] world positions.
        colors: [P, 3] RGB in [0, 1].
        normals: [P, 3] normals (zeros when unknown).
    """

    points: np.ndarray
    colors: np.ndarray
    normals: np.ndarray


def focal2fov(focal_px: float, pixels: int) -> float:
    """Full field of view in radians for a focal length and an image extent, both in pixels."""
    return 2.0 * math.atan(pixels / (2.0 * focal_px))


def fov2focal(fov: float, pixels: int) -> float:
    """Focal length in pixels for a full field of view in radians over ``pixels``."""
    return pixels / (2.0 * math.tan(fov / 2.0))


def getWorld2View(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World-to-camera matrix from a rotation and a translation (x_cam = R x_world + t).

    Args:
        R: [3, 3] world-to-camera rotation.
        t: [3] world-to-camera translation.

    Returns:
        [4, 4] float64 world-to-camera matrix.
    """
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3] = R
    world_to_cam[:3, 3] = t
    return world_to_cam


def qvec2rotmat(qvec: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] float64 from a quaternion [4] in (w, x, y, z) order (COLMAP's)."""
    return build_rotation(torch.from_numpy(np.asarray(qvec, dtype=np.float64))).numpy()


def camera_center(world_to_cam: np.ndarray) -> np.ndarray:
    """Camera centre [3] in world coordinates of a [4, 4] world-to-camera matrix: -Rᵀ t."""
    return -world_to_cam[:3, :3].T @ world_to_cam[:3, 3]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera matrix (OpenCV axes) of a camera at ``eye`` looking at ``target``.

    Args:
        eye: [3] camera centre in world coordinates.
        target: [3] point that lands on the optical axis.
        up: [3] world direction that appears upwards in the image (-y of the camera); must
            not be parallel to ``target - eye``.

    Returns:
        [4, 4] float64 world-to-camera matrix.

    Raises:
        ValueError: ``eye`` equals ``target``, or ``up`` is parallel to the viewing direction.
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    if not np.linalg.norm(forward) > 0:
        raise ValueError("look_at: eye and target coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)  # +x: forward × up, so that +y (down) = forward × right
    if not np.linalg.norm(right) > 1e-9 * np.linalg.norm(up):  # also refuses a zero up
        raise ValueError("look_at: up is parallel to the viewing direction")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return getWorld2View(rotation, -rotation @ eye)
