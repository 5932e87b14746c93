"""Importance scores (blending weights, volume term) and importance pruning (CODEC.md §2)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from compression.importance import compute_importance, prune_mask
from scene.gaussian_model import GaussianModel

ALPHA_MIN, ALPHA_MAX, T_MIN, NEAR, EPS2D = 1.0 / 255.0, 0.999, 1e-4, 0.01, 0.3


@dataclass
class _Cam:
    world_to_cam: torch.Tensor  # [4, 4]
    K: torch.Tensor  # [3, 3]
    width: int
    height: int


def _camera(yaw_deg: float, distance: float, width: int, height: int, f: float,
            cx: float, cy: float) -> _Cam:
    """Camera on a circle around the origin looking at it (OpenCV axes)."""
    a = math.radians(yaw_deg)
    rot = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    world_to_cam = np.eye(4)
    world_to_cam[:3, :3] = rot
    world_to_cam[:3, 3] = [0.0, 0.0, distance]
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
    return _Cam(torch.tensor(world_to_cam), torch.tensor(K), width, height)


def _tiny_scene() -> dict[str, torch.Tensor]:
    """Overlapping Gaussians in front of the cameras, plus one behind both, one far off
    screen and one below the opacity threshold (these three are never visible)."""
    g = torch.Generator().manual_seed(3)
    n_vis = 9
    means = torch.cat([torch.rand(n_vis, 3, generator=g, dtype=torch.float64) * 1.2 - 0.6,
                       torch.tensor([[0.0, 0.0, -30.0], [80.0, 0.0, 0.0], [0.1, 0.1, 0.0]],
                                    dtype=torch.float64)])
    n = means.shape[0]
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=torch.float64) * 1.5 - 2.8)
    opacities = torch.rand(n, generator=g, dtype=torch.float64) * 0.9 + 0.08
    opacities[-1] = 0.5 / 255.0
    opacities[0] = 0.995  # exercises the 0.999 clamp and early termination nearby
    return {"means": means, "quats": quats, "scales": scales, "opacities": opacities}


def _reference_weights(scene: dict[str, torch.Tensor], cam: _Cam) -> np.ndarray:
    """Σ over pixels of α·T per Gaussian, straight from RENDERING.md (float64, no tiles:
    outside a Gaussian's footprint box its α is below 1/255 anyway, so tiles change nothing)."""
    means, quats = scene["means"].numpy(), scene["quats"].numpy()
    scales, opac = scene["scales"].numpy(), scene["opacities"].numpy()
    view, K = cam.world_to_cam.numpy(), cam.K.numpy()
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    w_px, h_px = cam.width, cam.height
    n = means.shape[0]
    projected = []
    for i in range(n):
        p = view[:3, :3] @ means[i] + view[:3, 3]
        if p[2] < NEAR or opac[i] < ALPHA_MIN:
            continue
        w, x, y, z = quats[i] / np.linalg.norm(quats[i])
        rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        cov = view[:3, :3] @ rot @ np.diag(scales[i] ** 2) @ rot.T @ view[:3, :3].T
        lim_x = (cx / fx + 0.3 * w_px / (2 * fx), (w_px - cx) / fx + 0.3 * w_px / (2 * fx))
        lim_y = (cy / fy + 0.3 * h_px / (2 * fy), (h_px - cy) / fy + 0.3 * h_px / (2 * fy))
        tx = p[2] * min(max(p[0] / p[2], -lim_x[0]), lim_x[1])
        ty = p[2] * min(max(p[1] / p[2], -lim_y[0]), lim_y[1])
        jac = np.array([[fx / p[2], 0, -fx * tx / p[2] ** 2], [0, fy / p[2], -fy * ty / p[2] ** 2]])
        cov2d = jac @ cov @ jac.T + EPS2D * np.eye(2)
        if np.linalg.det(cov2d) <= 0:
            continue
        conic = np.linalg.inv(cov2d)
        centre = np.array([fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy])
        projected.append((p[2], i, centre, conic))
    projected.sort(key=lambda item: (item[0], item[1]))
    weights = np.zeros(n)
    for row in range(h_px):
        for col in range(w_px):
            pixel = np.array([col + 0.5, row + 0.5])
            transmittance = 1.0
            for _, i, centre, conic in projected:
                dx, dy = pixel - centre
                sigma = 0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) + conic[0, 1] * dx * dy
                if sigma < 0:
                    continue
                alpha = min(ALPHA_MAX, opac[i] * math.exp(-sigma))
                if alpha < ALPHA_MIN:
                    continue
                next_t = transmittance * (1 - alpha)
                if next_t <= T_MIN:
                    break
                weights[i] += alpha * transmittance
                transmittance = next_t
    return weights


def test_blending_weights_match_per_pixel_reference() -> None:
    scene = _tiny_scene()
    cameras = [_camera(0.0, 3.0, 24, 20, 22.0, 12.0, 10.0),
               _camera(35.0, 2.5, 20, 16, 18.0, 9.5, 8.25)]
    expected = sum(_reference_weights(scene, cam) for cam in cameras)
    scores = compute_importance(scene["means"], scene["quats"], scene["scales"],
                                scene["opacities"], cameras, backend="torch", beta=0.0)
    assert scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9, atol=1e-12)
    assert expected[:9].min() > 0 and np.all(expected[9:] == 0)
    # Deterministic: the same call gives the same bits.
    again = compute_importance(scene["means"], scene["quats"], scene["scales"],
                               scene["opacities"], cameras, backend="torch", beta=0.0)
    assert torch.equal(scores, again)


def test_volume_term_and_zero_scores_are_pruned() -> None:
    scene = _tiny_scene()
    cameras = [_camera(0.0, 3.0, 24, 20, 22.0, 12.0, 10.0)]
    beta = 0.37
    a = compute_importance(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                           cameras, backend="torch", beta=0.0)
    scores = compute_importance(scene["means"], scene["quats"], scene["scales"],
                                scene["opacities"], cameras, backend="torch", beta=beta)
    volumes = scene["scales"].prod(1).numpy()
    v_ref = np.percentile(volumes, 10)
    assert (volumes > v_ref).mean() == pytest.approx(0.9, abs=1 / len(volumes))
    np.testing.assert_allclose(scores.numpy(), a.numpy() * (volumes / v_ref) ** beta, rtol=1e-12)
    keep = prune_mask(scores, 0.0)
    assert keep.tolist() == (a > 0).tolist()
    assert not keep[-3:].any()


@pytest.fixture(scope="module")
def pretrained(shared_data: Path) -> GaussianModel:
    model = GaussianModel(3)
    model.load_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")
    return model


def test_without_cameras_uses_opacity(pretrained: GaussianModel) -> None:
    """No cameras: A = the opacity (MesonGS), times the ellipsoid's mean projected area
    (Thomsen's surface / 4) with ``area`` (the compact layout)."""
    opacities = pretrained.get_opacity.detach().reshape(-1)
    scales = pretrained.get_scaling.detach()
    plain = compute_importance(pretrained.get_xyz, pretrained.params["rotation"], scales,
                               opacities, None, beta=0.1)
    volumes = scales.double().prod(1).numpy()
    volume_term = (volumes / np.percentile(volumes, 10)) ** 0.1
    np.testing.assert_allclose(plain.numpy(), opacities.double().numpy() * volume_term,
                               rtol=1e-5)
    scores = compute_importance(pretrained.get_xyz, pretrained.params["rotation"], scales,
                                opacities, None, beta=0.1, area=True)
    s = scales.double().numpy()
    pairs = np.stack([s[:, 0] * s[:, 1], s[:, 0] * s[:, 2], s[:, 1] * s[:, 2]], axis=1)
    area = math.pi * ((pairs ** 1.6075).mean(1)) ** (1 / 1.6075)
    expected = opacities.double().numpy() * area * volume_term
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5)
    assert torch.equal(scores, compute_importance(pretrained.get_xyz, pretrained.params["rotation"],
                                                  scales, opacities, [], beta=0.1, area=True))


def test_prune_real_model(pretrained: GaussianModel) -> None:
    scores = compute_importance(pretrained.get_xyz, pretrained.params["rotation"],
                                pretrained.get_scaling, pretrained.get_opacity, None)
    n = scores.shape[0]
    keep = prune_mask(scores, 0.2)
    assert int(keep.sum()) == n - math.floor(0.2 * n)
    assert scores[~keep].max() <= scores[keep].min()


def test_prune_ties_zeros_and_counts() -> None:
    scores = torch.tensor([0.5, 0.0, 0.2, 0.2, 0.9, 0.0, 0.2, 0.1, 0.7, 0.3])
    # N = 10: both zeros go, then ⌊0.3·10⌋ = 3 of the rest: 0.1 (index 7), then the tied 0.2s
    # at indices 2 and 3 (lower index first); index 6 (also 0.2) stays.
    assert prune_mask(scores, 0.3).tolist() == [True, False, False, False, True, False, True,
                                                False, True, True]
    assert prune_mask(scores, 0.0).tolist() == (scores > 0).tolist()
    # More to remove than there are visible Gaussians: everything goes.
    assert not prune_mask(scores, 0.9).any()
    assert not prune_mask(scores, 1.0).any()
    # ⌊percent·N⌋ of the written decimal: 0.29·100 is 28.999… in binary, 29 are removed.
    many = torch.arange(1, 101, dtype=torch.float32)
    assert int((~prune_mask(many, 0.29)).sum()) == 29
    assert int((~prune_mask(many, 0.005)).sum()) == 0
    assert prune_mask(many, 0.03).tolist() == [False] * 3 + [True] * 97
    # Equal scores everywhere: the lowest indices go first.
    assert prune_mask(torch.ones(5), 0.4).tolist() == [False, False, True, True, True]


@pytest.mark.parametrize("percent", [-0.1, 1.5, float("nan")])
def test_prune_rejects_bad_percent(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        prune_mask(torch.ones(4), percent)


def test_prune_rejects_bad_scores() -> None:
    for bad in (torch.tensor([1.0, -0.1]), torch.tensor([1.0, float("nan")]), torch.ones(2, 2)):
        with pytest.raises(ValueError, match="scores"):
            prune_mask(bad, 0.1)
