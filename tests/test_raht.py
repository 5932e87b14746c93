"""RAHT: reference vectors, a slow literal reference, orthonormality, gradients, validation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compression.raht import build_raht, morton_codes

CASES = ["pair_z", "pair_x", "cube8", "sparse5_d3", "rand_d4", "sphere_d10", "rand_d20"]


def slow_morton(x: int, y: int, z: int, depth: int) -> int:
    return sum((((z >> k) & 1) << (3 * k)) | (((y >> k) & 1) << (3 * k + 1))
               | (((x >> k) & 1) << (3 * k + 2)) for k in range(depth))


def slow_raht(voxels: np.ndarray, attrs: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """CODEC.md §5 followed literally with Python loops over levels and nodes (float64).

    Returns (order [N], coefficients [N, C] in slot order).
    """
    codes = [slow_morton(int(x), int(y), int(z), depth) for x, y, z in voxels]
    order = sorted(range(len(codes)), key=lambda i: codes[i])
    coeffs = attrs[order].astype(np.float64).copy()
    # Active nodes: [code, slot, weight], sorted by code.
    nodes = [[codes[i], slot, 1.0] for slot, i in enumerate(order)]
    for _ in range(3 * depth):
        merged = []
        k = 0
        while k < len(nodes):
            if k + 1 < len(nodes) and nodes[k][0] >> 1 == nodes[k + 1][0] >> 1:
                (_, sl, wl), (_, sr, wr) = nodes[k], nodes[k + 1]
                a, b = math.sqrt(wl / (wl + wr)), math.sqrt(wr / (wl + wr))
                low, high = coeffs[sl].copy(), coeffs[sr].copy()
                coeffs[sl] = a * low + b * high
                coeffs[sr] = -b * low + a * high
                merged.append([nodes[k][0] >> 1, sl, wl + wr])
                k += 2
            else:
                merged.append([nodes[k][0] >> 1, nodes[k][1], nodes[k][2]])
                k += 1
        nodes = merged
    return np.array(order), coeffs


@pytest.fixture(scope="module")
def vectors(reference_dir):
    data = np.load(reference_dir / "raht_vectors.npz")
    return {case: {k: data[f"{case}/{k}"] for k in ("V", "A", "CT", "reorder", "depth")}
            for case in CASES}


def random_geometry(n: int, depth: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Clustered points (many siblings) plus uniform ones (sparse levels).
    centre = rng.integers(0, 2 ** depth, size=(4, 3))
    pts = np.concatenate([centre[rng.integers(0, 4, n)] + rng.integers(-3, 4, (n, 3)),
                          rng.integers(0, 2 ** depth, (n // 2, 3))])
    pts = np.unique(np.clip(pts, 0, 2 ** depth - 1), axis=0)
    return pts[rng.permutation(len(pts))]


@pytest.mark.parametrize("case", CASES)
def test_reference_vectors_float64(vectors, case):
    v = vectors[case]
    plan = build_raht(v["V"], int(v["depth"]))
    np.testing.assert_array_equal(plan.order.numpy(), v["reorder"])
    coeffs = plan.forward(torch.from_numpy(v["A"]))
    np.testing.assert_allclose(coeffs.numpy(), v["CT"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(plan.inverse(torch.from_numpy(v["CT"])).numpy(), v["A"],
                               atol=1e-9, rtol=0)
    assert plan.num_pairs == len(v["V"]) - 1


@pytest.mark.parametrize("case", ["sphere_d10", "rand_d20"])
def test_reference_vectors_float32(vectors, case):
    v = vectors[case]
    plan = build_raht(v["V"], int(v["depth"]))
    coeffs = plan.forward(torch.from_numpy(v["A"]).float())
    scale = np.abs(v["CT"]).max()
    np.testing.assert_allclose(coeffs.numpy(), v["CT"], atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("n,depth,seed", [(30, 3, 0), (150, 6, 1), (200, 12, 2), (120, 21, 3)])
def test_matches_slow_reference(n, depth, seed):
    voxels = random_geometry(n, depth, seed)
    attrs = np.random.default_rng(seed).normal(size=(len(voxels), 3))
    order, expected = slow_raht(voxels, attrs, depth)
    plan = build_raht(voxels, depth)
    np.testing.assert_array_equal(plan.order.numpy(), order)
    np.testing.assert_allclose(plan.forward(torch.from_numpy(attrs)).numpy(), expected,
                               atol=1e-10, rtol=0)


def test_morton_matches_bit_loop():
    rng = np.random.default_rng(4)
    voxels = np.concatenate([rng.integers(0, 2 ** 21, (50, 3)), [[2 ** 21 - 1] * 3, [0, 0, 1]]])
    expected = [slow_morton(int(x), int(y), int(z), 21) for x, y, z in voxels]
    assert morton_codes(voxels).tolist() == expected


def test_properties_float32(vectors):
    v = vectors["sphere_d10"]
    plan = build_raht(v["V"], int(v["depth"]))
    x = torch.from_numpy(v["A"]).float()
    coeffs = plan.forward(x)
    torch.testing.assert_close(plan.inverse(coeffs), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(coeffs.square().sum(0), x.square().sum(0), rtol=1e-5, atol=0)
    torch.testing.assert_close(coeffs[0], x.sum(0) / math.sqrt(len(x)), rtol=1e-5, atol=1e-6)


def test_gradcheck_forward_and_inverse(vectors):
    v = vectors["rand_d4"]
    plan = build_raht(v["V"], int(v["depth"]))
    x = torch.from_numpy(v["A"][:, :2]).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(plan.forward, (x,))
    assert torch.autograd.gradcheck(plan.inverse, (x,))
    assert torch.autograd.gradgradcheck(plan.forward, (x,))


def test_backward_equals_transpose(vectors):
    """Pushing a cotangent through forward gives inverse(cotangent) (orthonormal transform)."""
    v = vectors["sphere_d10"]
    plan = build_raht(v["V"], int(v["depth"]))
    x = torch.from_numpy(v["A"]).requires_grad_(True)
    cotangent = torch.from_numpy(np.random.default_rng(5).normal(size=v["A"].shape))
    plan.forward(x).backward(cotangent)
    torch.testing.assert_close(x.grad, plan.inverse(cotangent), atol=1e-12, rtol=0)


def test_single_voxel():
    plan = build_raht(np.array([[3, 1, 2]]), 2)
    x = torch.tensor([[1.5, -2.0]])
    torch.testing.assert_close(plan.forward(x), x)
    assert plan.levels == []


@pytest.mark.parametrize("voxels,depth,match", [
    (np.array([[0, 0, 0], [0, 0, 0]]), 2, "duplicate"),
    (np.array([[0, 0, 4]]), 2, r"\[0, 2\^2\)"),
    (np.array([[0, 0, -1]]), 2, "coordinates"),
    (np.zeros((3, 2), dtype=np.int64), 2, "shape"),
    (np.zeros((1, 3)), 2, "integer"),
    (np.zeros((1, 3), dtype=np.int64), 22, "depth"),
])
def test_invalid_inputs(voxels, depth, match):
    with pytest.raises(ValueError, match=match):
        build_raht(voxels, depth)


def test_wrong_attribute_rows(vectors):
    plan = build_raht(vectors["cube8"]["V"], 1)
    with pytest.raises(ValueError, match="attrs"):
        plan.forward(torch.zeros(7, 3))


def test_slot_levels_and_high_slots(vectors):
    """Every AC slot is the high-pass slot of exactly one level; high_slots lists them level by
    level, ascending within a level, and slot_levels names that level (the DC slot 0: -1)."""
    for case in vectors.values():
        plan = build_raht(case["V"], int(case["depth"]))
        levels = plan.slot_levels()
        high = plan.high_slots()
        assert levels[0] == -1 and int(levels.min()) == -1 and int((levels == -1).sum()) == 1
        assert sorted(high.tolist()) == list(range(1, plan.n))
        assert torch.equal(levels[high], torch.repeat_interleave(
            torch.arange(len(plan.levels)), torch.tensor([lv.num_pairs for lv in plan.levels])))
        for level in plan.levels:
            right = level.slots[level.num_pairs:]
            assert bool((right[1:] > right[:-1]).all())
