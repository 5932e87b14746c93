"""Quaternion <-> Euler conversion: reference vectors, round trips, NaN-free poles and gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compression.euler import euler_to_quat, euler_to_rotation, quat_to_euler
from utils.general_utils import build_rotation as quat_to_rotation


def slow_quat_to_euler(q: np.ndarray) -> np.ndarray:
    """Per-quaternion float64 loop with math.asin (CODEC.md §4, away from the poles)."""
    out = np.zeros((q.shape[0], 3))
    for i, (w, x, y, z) in enumerate(q / np.linalg.norm(q, axis=1, keepdims=True)):
        out[i] = (math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)),
                  math.asin(max(-1.0, min(1.0, 2 * (w * y - x * z)))),
                  math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    return out


@pytest.fixture(scope="module")
def vectors(reference_dir):
    return np.load(reference_dir / "euler_vectors.npz")


def test_reference_vectors(vectors):
    q = torch.from_numpy(vectors["quat_wxyz"])
    euler = quat_to_euler(q)
    np.testing.assert_allclose(euler.numpy(), vectors["euler_rpy"], atol=1e-12)
    np.testing.assert_allclose(quat_to_rotation(q).numpy(), vectors["rotation"], atol=1e-12)
    np.testing.assert_allclose(euler_to_rotation(euler).numpy(), vectors["rotation"], atol=1e-12)


def test_matches_slow_reference_unnormalized():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(300, 4, generator=g, dtype=torch.float64) * 3
    np.testing.assert_allclose(quat_to_euler(q).numpy(), slow_quat_to_euler(q.numpy()), atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_round_trip_rotation_and_quat(dtype, tol):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(500, 4, generator=g, dtype=torch.float64).to(dtype)
    euler = quat_to_euler(q)
    torch.testing.assert_close(euler_to_rotation(euler), quat_to_rotation(q), atol=tol * 5, rtol=0)
    q_back = euler_to_quat(euler)
    torch.testing.assert_close(quat_to_rotation(q_back), quat_to_rotation(q), atol=tol * 5, rtol=0)
    # Same rotation up to the sign of the quaternion.
    q_unit = q / q.norm(dim=1, keepdim=True)
    assert ((q_back * q_unit).sum(1).abs() - 1).abs().max() < tol * 5


def _pole_quats(dtype: torch.dtype) -> torch.Tensor:
    """Exact poles (pitch = ±90° with and without roll/yaw), points next to them, zero quat."""
    rows = []
    for pitch in (math.pi / 2, -math.pi / 2):
        for delta in (0.0, 1e-9, -1e-9, 1e-5):
            for roll, yaw in ((0.0, 0.0), (0.3, -1.1), (2.0, 2.0)):
                rows.append([roll, pitch - math.copysign(delta, pitch), yaw])
    quats = euler_to_quat(torch.tensor(rows, dtype=torch.float64))
    half = math.sqrt(0.5)
    extra = torch.tensor([[half, 0, half, 0], [half, 0, -half, 0], [0, half, 0, half],
                          [0, 0, 0, 0]], dtype=torch.float64)
    return torch.cat([quats, extra]).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_poles_finite_values_and_gradients(dtype):
    q = _pole_quats(dtype).requires_grad_(True)
    euler = quat_to_euler(q)
    assert torch.isfinite(euler).all()
    assert euler[-1].abs().max() == 0  # zero quaternion -> zero angles
    (euler.sum() + euler_to_rotation(euler).square().sum()).backward()
    assert torch.isfinite(q.grad).all()


def test_near_pole_rotation_recovered():
    """1e-5 rad from the poles the CODEC.md formula still reconstructs R (float64).

    Exactly at a pole only roll ± yaw is defined and the formula's atan2(0, 0) cannot recover
    it; there the requirement is finiteness (test above).
    """
    rows = [[roll, sign * (math.pi / 2 - 1e-5), yaw] for sign in (1, -1)
            for roll, yaw in ((0.3, -1.1), (2.0, 2.0), (-2.5, 0.7))]
    q = euler_to_quat(torch.tensor(rows, dtype=torch.float64))
    euler = quat_to_euler(q)
    torch.testing.assert_close(euler_to_rotation(euler), quat_to_rotation(q), atol=1e-5, rtol=0)


def test_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(quat_to_euler, (q,))
    e = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(euler_to_rotation, (e,))
    assert torch.autograd.gradcheck(euler_to_quat, (e,))


def test_bad_shape():
    with pytest.raises(ValueError, match="quats"):
        quat_to_euler(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="euler"):
        euler_to_rotation(torch.zeros(5, 4))
