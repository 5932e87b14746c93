"""Octree occupancy coding (compression/octree_coding.py): exact round trips on real positions,
the tree's structure, rates, determinism, and refusal of damaged streams."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.entropy import EntropyError
from compression.octree import voxelize
from compression.octree_coding import (decode_octree, encode_octree, morton_to_voxels,
                                       occupancy_levels, voxels_from_occupancy)
from compression.raht import morton_codes
from scene.ply import read_ply


@pytest.fixture(scope="module")
def positions(shared_data) -> torch.Tensor:
    """Centres of a real 3DGS model (9,080 Gaussians)."""
    return torch.from_numpy(read_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")["xyz"])


def _sorted_unique(voxels: np.ndarray, depth: int) -> np.ndarray:
    keys = (voxels[:, 0] << (2 * depth)) | (voxels[:, 1] << depth) | voxels[:, 2]
    _, first = np.unique(keys, return_index=True)
    return voxels[first]


@pytest.mark.parametrize("depth", [1, 6, 12, 16, 21])
def test_round_trip_real_positions(positions, depth):
    voxels = voxelize(positions, depth)[0].numpy()
    decoded, decoded_depth = decode_octree(encode_octree(voxels, depth), len(voxels))
    assert decoded_depth == depth and decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, _sorted_unique(voxels, depth))


def test_occupancy_structure(positions):
    depth = 10
    voxels = voxelize(positions, depth)[0].numpy()
    levels = occupancy_levels(voxels, depth)
    assert len(levels) == depth and levels[0].size == 1
    for parent, child in zip(levels, levels[1:]):
        assert child.size == int(np.unpackbits(parent).sum())  # one byte per occupied child
        assert parent.all()
    leaves = voxels_from_occupancy(levels, len(voxels))
    assert leaves.size == int(np.unpackbits(levels[-1]).sum()) == len(_sorted_unique(voxels, depth))
    assert np.all(np.diff(leaves) > 0)
    np.testing.assert_array_equal(leaves, np.unique(morton_codes(voxels)))


def test_morton_inverse(positions):
    voxels = voxelize(positions, 21)[0].numpy()
    np.testing.assert_array_equal(morton_to_voxels(morton_codes(voxels)), voxels)
    corners = np.array([[0, 0, 0], [2 ** 21 - 1] * 3, [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(morton_to_voxels(morton_codes(corners)), corners)


def test_rate_grows_at_most_three_bits_per_level(positions):
    """Below the sampling density every point is alone in its node: one of 8 children, 3 bits."""
    bits = {}
    for depth in range(8, 22, 2):
        voxels = voxelize(positions, depth)[0].numpy()
        bits[depth] = 8 * len(encode_octree(voxels, depth)) / len(_sorted_unique(voxels, depth))
    increments = np.diff([bits[d] for d in sorted(bits)]) / 2
    assert np.all(increments > 1.0) and np.all(increments <= 3.05), bits
    assert bits[12] < 24 and bits[20] < 48, bits  # far below the 64-bit keys it replaces


def test_independent_of_order_and_duplicates(positions):
    voxels = voxelize(positions, 14)[0].numpy()
    shuffled = np.random.default_rng(0).permutation(np.concatenate([voxels, voxels[:500]]))
    assert encode_octree(shuffled, 14) == encode_octree(voxels, 14) == encode_octree(voxels, 14)


def test_edge_cases():
    for voxels, depth in ((np.zeros((1, 3), np.int64), 1), (np.array([[1, 1, 1]]), 1),
                          (np.stack(np.meshgrid(*[np.arange(4)] * 3), -1).reshape(-1, 3), 2),
                          (np.array([[2 ** 21 - 1, 0, 5]]), 21)):
        decoded, _ = decode_octree(encode_octree(voxels, depth), len(voxels))
        np.testing.assert_array_equal(decoded, _sorted_unique(voxels, depth))
    with pytest.raises(ValueError):
        encode_octree(np.array([[4, 0, 0]]), 2)  # outside [0, 2^D - 1]
    with pytest.raises(ValueError):
        encode_octree(np.zeros((0, 3), np.int64), 4)
    with pytest.raises(ValueError):
        encode_octree(np.zeros((3, 3), np.int64), 22)


def test_point_count_bounded_by_caller(positions):
    voxels = voxelize(positions, 16)[0].numpy()
    data = encode_octree(voxels, 16)
    with pytest.raises(EntropyError):
        decode_octree(data, len(_sorted_unique(voxels, 16)) - 1)


def test_damaged_streams_refused_or_well_formed(positions):
    """Truncations and bit flips: EntropyError, or unique in-range voxels, never another error."""
    depth = 12
    voxels = voxelize(positions[:2000], depth)[0].numpy()
    data = encode_octree(voxels, depth)
    rng = np.random.default_rng(5)
    mutations = [data[:cut] for cut in range(0, len(data), 7)] + [data + b"\x00" * 4]
    for _ in range(300):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 4)):
            damaged[position] ^= 1 << int(rng.integers(8))
        mutations.append(bytes(damaged))
    refused = 0
    for damaged in mutations:
        try:
            decoded, decoded_depth = decode_octree(damaged, len(voxels))
        except EntropyError:
            refused += 1
            continue
        assert 1 <= decoded_depth <= 21 and 1 <= len(decoded) <= len(voxels)
        assert decoded.min() >= 0 and decoded.max() < 2 ** decoded_depth
        assert len(_sorted_unique(decoded, decoded_depth)) == len(decoded)
    assert refused >= 0.9 * len(mutations)
