"""Lossless coding of a set of voxels as octree occupancy bytes (breadth-first), entropy-coded.

The unique voxels of an octree of depth D are the leaves of a tree whose internal nodes at depth
d are the distinct Morton-code prefixes ``morton >> 3(D - d)`` (``raht.morton_codes``: z lowest).
Each internal node has one occupancy byte (bit k set: child ``8·node + k`` exists). Bytes are
listed breadth-first, each depth in ascending Morton order; the decoder rebuilds each depth from
the previous one, so the node counts need not be stored.

Stream: ``depth`` (1 byte), varint N (leaves), varint G (model groups), G varints (occupancy
bytes per group), then one ``entropy.StreamWriter`` stream holding G CATEGORICAL segments. A
group is a run of consecutive depths sharing one histogram; the encoder picks the grouping that
minimizes the estimated size (dynamic programming over the D depths), so shallow depths with a
handful of bytes do not each pay for a histogram.
"""
from __future__ import annotations

import numpy as np

from .entropy import (ByteReader, EntropyError, Model, StreamReader, StreamWriter,
                      categorical_cost_bits, put_varint)
from .octree import MAX_DEPTH
from .raht import morton_codes

__all__ = ["decode_octree", "encode_octree", "morton_to_voxels", "occupancy_levels",
           "voxels_from_occupancy"]

def _compact_bits(code: np.ndarray) -> np.ndarray:
    """Gather bits 0, 3, 6, … of each value into bits 0, 1, 2, … (inverse of spreading)."""
    v = code.astype(np.uint64) & np.uint64(0x1249249249249249)
    for shift, mask in ((2, 0x10C30C30C30C30C3), (4, 0x100F00F00F00F00F),
                        (8, 0x1F0000FF0000FF), (16, 0x1F00000000FFFF), (32, 0x1FFFFF)):
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v.astype(np.int64)


def morton_to_voxels(codes: np.ndarray) -> np.ndarray:
    """[N] int64 Morton codes -> [N, 3] int64 voxels (x, y, z); inverse of ``raht.morton_codes``."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.stack([_compact_bits(codes >> 2), _compact_bits(codes >> 1), _compact_bits(codes)],
                    axis=1)


def _check_depth(depth: int) -> int:
    if not 1 <= int(depth) <= MAX_DEPTH:
        raise ValueError(f"depth: expected an integer in [1, {MAX_DEPTH}], got {depth}")
    return int(depth)


def occupancy_levels(voxels: np.ndarray, depth: int) -> list[np.ndarray]:
    """Occupancy bytes of the octree over the unique voxels, one uint8 array per depth 0..D-1.

    Args:
        voxels: [N, 3] integer voxel coordinates in [0, 2^D - 1] (duplicates allowed), N >= 1.
        depth: D in [1, 21].

    Returns:
        D arrays; entry d holds one byte per node at depth d, nodes in ascending Morton order.
    """
    depth = _check_depth(depth)
    voxels = np.asarray(voxels)
    if voxels.ndim != 2 or voxels.shape[1] != 3 or voxels.shape[0] == 0:
        raise ValueError(f"voxels: expected shape [N, 3] with N >= 1, got {voxels.shape}")
    if voxels.min() < 0 or voxels.max() >= 1 << depth:
        raise ValueError(f"voxels: coordinates must lie in [0, 2^{depth} - 1]")
    nodes = np.sort(morton_codes(voxels))
    nodes = nodes[np.flatnonzero(np.diff(nodes, prepend=-1))]  # unique (faster than np.unique)
    levels: list[np.ndarray] = []
    for _ in range(depth):  # bottom-up: children -> their parents' bytes
        parents = nodes >> 3
        starts = np.flatnonzero(np.diff(parents, prepend=-1))
        bits = np.left_shift(1, nodes & 7)
        levels.append(np.bitwise_or.reduceat(bits, starts).astype(np.uint8))
        nodes = parents[starts]
    return levels[::-1]


def voxels_from_occupancy(levels: list[np.ndarray], max_points: int) -> np.ndarray:
    """Leaves of an occupancy tree as ascending Morton codes; inverse of ``occupancy_levels``.

    Raises ``EntropyError`` when a level's size does not match the previous level, a byte is 0
    or a level exceeds ``max_points`` nodes (so memory stays bounded by 8·max_points).
    """
    nodes = np.zeros(1, dtype=np.int64)
    for depth, occupancy in enumerate(levels):
        if occupancy.shape != nodes.shape:
            raise EntropyError(f"octree depth {depth}: {occupancy.size} bytes for {nodes.size} nodes")
        nodes = _children(nodes, occupancy, max_points, depth)
    return nodes


def _children(nodes: np.ndarray, occupancy: np.ndarray, max_points: int, depth: int) -> np.ndarray:
    """Children (ascending Morton order) of ``nodes`` given their occupancy bytes."""
    if not occupancy.all():
        raise EntropyError(f"octree depth {depth}: empty occupancy byte")
    bits = np.unpackbits(occupancy.astype(np.uint8)[:, None], axis=1, bitorder="little")
    set_bits = np.flatnonzero(bits.reshape(-1))  # 8·parent + child, ascending
    if set_bits.size > max_points:
        raise EntropyError(f"octree depth {depth}: more than {max_points} nodes")
    return (nodes[set_bits >> 3] << 3) | (set_bits & 7)


def _best_grouping(levels: list[np.ndarray]) -> list[int]:
    """Depth counts of the cheapest split of the depths into runs sharing one histogram."""
    histograms = np.stack([np.bincount(level, minlength=256) for level in levels])
    cumulative = np.vstack([np.zeros(256, dtype=np.int64), np.cumsum(histograms, axis=0)])
    depth = len(levels)
    best = np.full(depth + 1, np.inf)
    best[0] = 0.0
    previous = np.zeros(depth + 1, dtype=np.int64)
    for end in range(1, depth + 1):
        for start in range(end):
            counts = cumulative[end] - cumulative[start]
            used = np.flatnonzero(counts)
            cost = best[start] + categorical_cost_bits(counts[used[0]:used[-1] + 1])
            if cost < best[end]:
                best[end], previous[end] = cost, start
    sizes: list[int] = []
    end = depth
    while end > 0:
        sizes.append(end - int(previous[end]))
        end = int(previous[end])
    return sizes[::-1]


def encode_octree(voxels: np.ndarray, depth: int) -> bytes:
    """Entropy-coded octree of the unique voxels (see the module docstring for the format).

    Args:
        voxels: [N, 3] integer voxel coordinates in [0, 2^D - 1], N >= 1 (duplicates allowed).
        depth: D in [1, 21].
    """
    levels = occupancy_levels(voxels, depth)
    groups = _best_grouping(levels)
    header = bytearray([depth])
    put_varint(header, int(np.unpackbits(levels[-1][:, None], axis=1).sum()))
    put_varint(header, len(groups))
    writer = StreamWriter()
    first = 0
    for size in groups:
        symbols = np.concatenate(levels[first:first + size])
        put_varint(header, symbols.size)
        writer.write(symbols, Model.CATEGORICAL)
        first += size
    return bytes(header) + writer.to_bytes()


def decode_octree(data: bytes, max_points: int) -> tuple[np.ndarray, int]:
    """Inverse of ``encode_octree``.

    Args:
        data: the stream.
        max_points: refuse a stream declaring more leaves (bounds every allocation).

    Returns:
        voxels: [N, 3] int64, the unique voxels sorted by ascending key x·2^(2D) + y·2^D + z.
        depth: D.

    Raises:
        EntropyError: damaged, truncated or inconsistent stream.
    """
    reader = ByteReader(bytes(data))
    depth = reader.uint(1)
    if not 1 <= depth <= MAX_DEPTH:
        raise EntropyError(f"invalid octree depth {depth}")
    count = reader.varint(max_points)
    if count == 0:
        raise EntropyError("octree with no points")
    group_sizes = [reader.varint(depth * count) for _ in range(reader.varint(depth))]
    if sum(group_sizes) > depth * count:
        raise EntropyError("more occupancy bytes than the tree can hold")
    stream = StreamReader(bytes(data)[reader.position:])
    nodes = np.zeros(1, dtype=np.int64)
    level = 0
    for size in group_sizes:
        symbols = stream.read(size)
        if symbols.size and (symbols.min() < 1 or symbols.max() > 255):
            raise EntropyError("occupancy byte out of range")
        used = 0
        while used < size:
            parents = nodes.size
            if level == depth or used + parents > size:
                raise EntropyError("occupancy groups do not match the tree's levels")
            nodes = _children(nodes, symbols[used:used + parents].astype(np.uint8), count, level)
            used += parents
            level += 1
    stream.close()
    if level != depth or nodes.size != count:
        raise EntropyError(f"octree decodes to {nodes.size} points at depth {level}, "
                           f"expected {count} at depth {depth}")
    voxels = morton_to_voxels(nodes)
    keys = (voxels[:, 0] << (2 * depth)) | (voxels[:, 1] << depth) | voxels[:, 2]
    return voxels[np.argsort(keys, kind="stable")], depth
