"""Synthetic scenes, cameras and duck-typed models shared by the rasterizer tests (torch only)."""
from __future__ import annotations

from types import SimpleNamespace

import torch


def intrinsics(width: int, height: int, focal_scale: float = 1.1, shift=(0.0, 0.0), dtype=torch.float32):
    f = focal_scale * width
    return torch.tensor([[f, 0, width / 2 + shift[0]], [0, 0.9 * f, height / 2 + shift[1]], [0, 0, 1]], dtype=dtype)


def look_transform(seed: int, dtype=torch.float32) -> torch.Tensor:
    """A world→camera matrix with a small random rotation and translation."""
    g = torch.Generator().manual_seed(seed)
    axis_angle = 0.2 * torch.randn(3, generator=g, dtype=torch.float64)
    angle = axis_angle.norm()
    k = torch.zeros(3, 3, dtype=torch.float64)
    k[0, 1], k[0, 2], k[1, 2] = -axis_angle[2], axis_angle[1], -axis_angle[0]
    k = (k - k.T) / angle
    rot = torch.eye(3, dtype=torch.float64) + angle.sin() * k + (1 - angle.cos()) * k @ k
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3], viewmat[:3, 3] = rot, 0.1 * torch.randn(3, generator=g, dtype=torch.float64)
    return viewmat.to(dtype)


def random_scene(n: int, seed: int, sh_degree: int | None = 3, dtype=torch.float32, log_scale=(-4.5, -1.5),
                 opacity=(0.05, 1.0)) -> dict[str, torch.Tensor]:
    """The benchmark's distribution: means in a frustum-shaped box in front of the camera."""
    g = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    scene = {
        "means": torch.stack([uniform(-1.5, 1.5, n), uniform(-1.1, 1.1, n), uniform(0.5, 6.0, n)], -1),
        "quats": torch.randn(n, 4, generator=g, dtype=torch.float64),
        "scales": uniform(*log_scale, n, 3).exp(),
        "opacities": uniform(*opacity, n),
        "colors": (0.4 * torch.randn(n, 16, 3, generator=g, dtype=torch.float64) if sh_degree is not None
                   else uniform(0.0, 1.0, n, 3)),
    }
    return {k: v.to(dtype) for k, v in scene.items()}


class FakeModel:
    """Duck-typed GaussianModel: activated attributes as properties."""

    def __init__(self, scene: dict[str, torch.Tensor]) -> None:
        self.params = {k: v.clone().requires_grad_(True) for k, v in scene.items()}
        self.active_sh_degree = 3

    get_xyz = property(lambda self: self.params["means"])
    get_rotation = property(lambda self: self.params["quats"])
    get_scaling = property(lambda self: self.params["scales"])
    get_opacity = property(lambda self: self.params["opacities"][:, None])
    get_features = property(lambda self: self.params["colors"])


def camera(width: int, height: int, viewmat: torch.Tensor, K: torch.Tensor) -> SimpleNamespace:
    return SimpleNamespace(world_to_cam=viewmat, K=K, width=width, height=height)
