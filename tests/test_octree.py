"""Voxelization, voxel keys and the per-voxel merge of Gaussians."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.octree import (codes_to_keys, decode_positions, keys_to_codes, merge_voxels,
                                voxelize)


def _points(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 0.5, 10.0])


@pytest.mark.parametrize("depth", [1, 8, 20])
def test_codes_clipped_and_max_point_in_last_voxel(depth):
    p = _points(500, depth)
    codes, params = voxelize(p, depth)
    assert codes.dtype == torch.int64 and params.dtype == torch.float64
    assert int(codes.min()) == 0 and int(codes.max()) == 2 ** depth - 1
    for axis in range(3):
        assert int(codes[p[:, axis].argmax(), axis]) == 2 ** depth - 1
        assert int(codes[p[:, axis].argmin(), axis]) == 0
    np.testing.assert_array_equal(params.numpy().reshape(3, 2),
                                  torch.stack([p.min(0).values, p.max(0).values], 1).numpy())


@pytest.mark.parametrize("depth", [4, 12, 21])
def test_decode_within_half_voxel(depth):
    p = _points(1000, 7)
    codes, params = voxelize(p, depth)
    centres = decode_positions(codes, params, depth)
    voxel = (p.max(0).values - p.min(0).values) / 2 ** depth
    assert bool(((centres - p).abs() <= voxel / 2 * (1 + 1e-9) + 1e-12).all())


def test_degenerate_axis_gives_code_zero():
    p = _points(50, 1)
    p[:, 1] = 2.5
    codes, params = voxelize(p.float(), 10)
    assert bool((codes[:, 1] == 0).all())
    decoded_y = decode_positions(codes, params, 10)[:, 1]
    assert torch.allclose(decoded_y, torch.full((50,), 2.5, dtype=torch.float64))


@pytest.mark.parametrize("depth", [20, 21])
def test_key_round_trip_large_depth(depth):
    g = torch.Generator().manual_seed(depth)
    codes = torch.randint(0, 2 ** depth, (1000, 3), generator=g)
    codes[0] = 2 ** depth - 1
    keys = codes_to_keys(codes, depth)
    assert keys.dtype == torch.int64 and bool((keys >= 0).all())
    expected = [int(x) * 2 ** (2 * depth) + int(y) * 2 ** depth + int(z) for x, y, z in codes.tolist()]
    assert keys.tolist() == expected
    assert torch.equal(keys_to_codes(keys, depth), codes)


def test_depth_validation():
    with pytest.raises(ValueError, match="depth"):
        voxelize(_points(5, 0), 22)
    with pytest.raises(ValueError, match="depth"):
        codes_to_keys(torch.zeros(1, 3, dtype=torch.int64), 0)
    with pytest.raises(ValueError, match="positions"):
        voxelize(torch.zeros(4, 2), 5)


def _slow_merge(keys, values, weights, quat=False):
    """Per-voxel Python loop: (weighted) mean with quaternion sign alignment to the first member."""
    out = {}
    for k in sorted(set(keys.tolist())):
        members = [i for i in range(len(keys)) if keys[i] == k]
        rows = [values[i].clone() for i in members]
        if quat:
            rows = [r if float((r * rows[0]).sum()) >= 0 else -r for r in rows]
        w = [float(weights[i]) for i in members]
        if sum(w) == 0:
            w = [1.0] * len(members)
        mean = sum(wi * r for wi, r in zip(w, rows)) / sum(w)
        out[k] = mean / mean.norm() if quat else mean
    return torch.tensor(sorted(out)), torch.stack([out[k] for k in sorted(out)])


@pytest.mark.parametrize("mode", ["mean", "imp"])
def test_merge_matches_slow_loop(mode):
    g = torch.Generator().manual_seed(0)
    n = 300
    keys = torch.randint(0, 40, (n,), generator=g) * 1000003
    attrs = {"rotation": torch.randn(n, 4, generator=g, dtype=torch.float64),
             "f_dc": torch.randn(n, 1, 3, generator=g, dtype=torch.float64)}
    importance = torch.rand(n, generator=g, dtype=torch.float64)
    importance[keys == keys[0]] = 0  # a voxel with zero total importance -> plain mean
    weights = importance if mode == "imp" else torch.ones(n, dtype=torch.float64)
    unique, merged = merge_voxels(keys, attrs, mode=mode, importance=importance)
    expected_keys, expected_q = _slow_merge(keys, attrs["rotation"], weights, quat=True)
    _, expected_dc = _slow_merge(keys, attrs["f_dc"], weights)
    assert torch.equal(unique, expected_keys)
    torch.testing.assert_close(merged["rotation"], expected_q)
    torch.testing.assert_close(merged["f_dc"], expected_dc)
    assert merged["f_dc"].shape == (len(unique), 1, 3)


def test_merge_matrix_and_sign_alignment():
    keys = torch.tensor([9, 2, 9, 2, 5])
    q = torch.tensor([[0.2, 0.5, -0.1, 0.8]])
    quats = torch.cat([q, q, -q, -q, q])
    _, merged = merge_voxels(keys, {"rotation": quats})
    expected = q / q.norm()
    torch.testing.assert_close(merged["rotation"], torch.cat([expected, expected, expected]))
    unique, mat = merge_voxels(keys, torch.arange(10.0).reshape(5, 2))
    assert unique.tolist() == [2, 5, 9]
    torch.testing.assert_close(mat, torch.tensor([[4.0, 5.0], [8.0, 9.0], [2.0, 3.0]]))


def test_merge_rand_is_a_seeded_member():
    g = torch.Generator().manual_seed(1)
    keys = torch.randint(0, 10, (200,), generator=g)
    values = torch.arange(200.0)[:, None]
    picks = []
    for seed in (3, 3, 4):
        unique, merged = merge_voxels(keys, values, mode="rand",
                                      generator=torch.Generator().manual_seed(seed))
        for k, v in zip(unique.tolist(), merged[:, 0].long().tolist()):
            assert keys[v] == k  # a real member of that voxel
        picks.append(merged)
    assert torch.equal(picks[0], picks[1]) and not torch.equal(picks[0], picks[2])


def test_merge_invalid_arguments():
    keys = torch.tensor([1, 1, 2])
    with pytest.raises(ValueError, match="mode"):
        merge_voxels(keys, torch.zeros(3, 2), mode="max")
    with pytest.raises(ValueError, match="importance"):
        merge_voxels(keys, torch.zeros(3, 2), mode="imp")
    with pytest.raises(ValueError, match="rows"):
        merge_voxels(keys, {"opacity": torch.zeros(2, 1)})
