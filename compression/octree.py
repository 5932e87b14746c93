"""Voxelization of Gaussian centres at octree depth D and per-voxel merging (CODEC.md §3).

code = clip(floor((p - min) / (max - min) · 2^D), 0, 2^D - 1) per axis (a degenerate axis gives
code 0); decoding gives voxel centres min + (code + 0.5)·(max - min)/2^D. The storage key is
x·2^(2D) + y·2^D + z in int64 arithmetic (D <= 21).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import torch
from torch import Tensor

__all__ = ["AUTO_DEPTH_RANGE", "MAX_DEPTH", "MERGE_MODES", "check_depth", "codes_to_keys",
           "decode_positions", "depth_for_scales", "keys_to_codes", "merge_voxels", "voxelize"]

#: 3·21 = 63 bits: a voxel key (and a Morton code) fits a non-negative int64
MAX_DEPTH = 21
#: the depths :func:`depth_for_scales` chooses from
AUTO_DEPTH_RANGE = (6, MAX_DEPTH)
MERGE_MODES = ("mean", "imp", "rand")
#: rows per weighted sum of :func:`merge_voxels` (a chunk of 45 f_rest values: 12 MB)
_MERGE_CHUNK_ROWS = 65536

Attributes = Union[Tensor, Mapping[str, Tensor]]


def check_depth(depth: int) -> int:
    """``depth`` as an int in [1, MAX_DEPTH]; ValueError otherwise."""
    if not 1 <= int(depth) <= MAX_DEPTH:
        raise ValueError(f"depth: expected an integer in [1, {MAX_DEPTH}], got {depth}")
    return int(depth)


def voxelize(positions: Tensor, depth: int) -> tuple[Tensor, Tensor]:
    """Integer voxel coordinates of points in their per-axis bounding box.

    Args:
        positions: [N, 3] float centres (world units), N >= 1.
        depth: D in [1, 21], bits per axis.

    Returns:
        codes: [N, 3] int64 in [0, 2^D - 1] (same device as ``positions``).
        params: [6] float64 bbox (xmin, xmax, ymin, ymax, zmin, zmax).
    """
    depth = check_depth(depth)
    if positions.ndim != 2 or positions.shape[1] != 3 or positions.shape[0] == 0:
        raise ValueError(f"positions: expected shape [N, 3] with N >= 1, got {tuple(positions.shape)}")
    p = positions.detach().to(torch.float64)
    if not torch.isfinite(p).all():
        raise ValueError("positions: contain NaN or infinite values")
    lo, hi = p.min(dim=0).values, p.max(dim=0).values
    extent = hi - lo
    scaled = (p - lo) / torch.where(extent > 0, extent, torch.ones_like(extent)) * float(2 ** depth)
    codes = torch.floor(scaled).to(torch.int64).clamp_(0, 2 ** depth - 1)
    codes[:, extent <= 0] = 0
    params = torch.stack([lo, hi], dim=1).reshape(6)
    return codes, params


def depth_for_scales(positions: Tensor, log_scales: Tensor, voxel_ratio: float) -> int:
    """The octree depth a model's own sizes ask for: the smallest D whose voxel edge (the
    bounding box's largest axis / 2^D) is at most ``voxel_ratio`` × the median of the
    Gaussians' largest scale, clamped to :data:`AUTO_DEPTH_RANGE`.

    A voxel well below a typical Gaussian's extent moves centres by an invisible amount, while
    every further level costs about 3 bits per isolated voxel.

    Args:
        positions: [N, 3] centres; log_scales: [N, 3] raw (log) scales; N >= 1.
        voxel_ratio: voxel edge over the median largest scale (> 0).
    """
    if positions.ndim != 2 or positions.shape[1] != 3 or positions.shape[0] == 0 \
            or log_scales.shape != positions.shape:
        raise ValueError(f"depth_for_scales: expected positions and log_scales [N, 3], N >= 1; "
                         f"got {tuple(positions.shape)}, {tuple(log_scales.shape)}")
    if not voxel_ratio > 0:
        raise ValueError(f"voxel_ratio must be > 0, got {voxel_ratio}")
    p = positions.detach().to(torch.float64)
    extent = float((p.max(dim=0).values - p.min(dim=0).values).max())
    largest = float(torch.exp(log_scales.detach().to(torch.float64).max(dim=1).values).median())
    low, high = AUTO_DEPTH_RANGE
    if not (extent > 0 and largest > 0 and math.isfinite(extent / largest)):
        return low
    return min(max(math.ceil(math.log2(extent / (voxel_ratio * largest))), low), high)


def decode_positions(codes: Tensor, params: Tensor, depth: int) -> Tensor:
    """Voxel centres of integer codes.

    Args:
        codes: [N, 3] int64 voxel coordinates.
        params: [6] float64 bbox (xmin, xmax, ymin, ymax, zmin, zmax).
        depth: D.

    Returns:
        [N, 3] float64 centres min + (code + 0.5)·(max - min)/2^D.
    """
    depth = check_depth(depth)
    if params.numel() != 6:
        raise ValueError(f"params: expected 6 values, got {params.numel()}")
    bbox = params.to(device=codes.device, dtype=torch.float64).reshape(3, 2)
    voxel = (bbox[:, 1] - bbox[:, 0]) / float(2 ** depth)
    return bbox[:, 0] + (codes.to(torch.float64) + 0.5) * voxel


def codes_to_keys(codes: Tensor, depth: int) -> Tensor:
    """[N, 3] int64 codes -> [N] int64 keys x·2^(2D) + y·2^D + z."""
    depth = check_depth(depth)
    if codes.ndim != 2 or codes.shape[1] != 3:
        raise ValueError(f"codes: expected shape [N, 3], got {tuple(codes.shape)}")
    c = codes.to(torch.int64)
    return (c[:, 0] << (2 * depth)) | (c[:, 1] << depth) | c[:, 2]


def keys_to_codes(keys: Tensor, depth: int) -> Tensor:
    """[N] int64 keys -> [N, 3] int64 codes (x, y, z); inverse of ``codes_to_keys``."""
    depth = check_depth(depth)
    mask = (1 << depth) - 1
    k = keys.to(torch.int64)
    return torch.stack([k >> (2 * depth), (k >> depth) & mask, k & mask], dim=1)


def _group_mean(values: Tensor, inverse: Tensor, weights: Tensor, n_groups: int) -> Tensor:
    """Weighted mean per group: values [N, ...], inverse [N], weights [N] -> [M, ...].

    The weighted rows are summed :data:`_MERGE_CHUNK_ROWS` at a time (no [N, F] product: 1 GB
    of f_rest at 6 M rows), each group's in row order as one ``index_add_`` would."""
    flat = values.reshape(values.shape[0], -1)
    w = weights.to(flat.dtype)
    total = flat.new_zeros(n_groups).index_add_(0, inverse, w)
    sums = flat.new_zeros((n_groups, flat.shape[1]))
    for start in range(0, flat.shape[0], _MERGE_CHUNK_ROWS):
        rows = slice(start, start + _MERGE_CHUNK_ROWS)
        sums.index_add_(0, inverse[rows], flat[rows] * w[rows, None])
    return (sums / total[:, None]).reshape((n_groups,) + values.shape[1:])


def merge_voxels(keys: Tensor, attributes: Attributes, mode: str = "mean",
                 importance: Tensor | None = None, generator: torch.Generator | None = None,
                 quaternion_keys: Sequence[str] = ("rotation",)) -> tuple[Tensor, Attributes]:
    """Merge Gaussians that share a voxel key.

    Args:
        keys: [N] int64 voxel keys.
        attributes: [N, F] float matrix, or a dict of [N, ...] float tensors (raw values).
        mode: "mean" (plain mean), "imp" (``importance``-weighted mean; a voxel whose weights
            sum to 0 gets the plain mean), "rand" (one member drawn with ``generator``).
        importance: [N] non-negative scores, required for "imp".
        generator: torch.Generator for "rand" (on the keys' device).
        quaternion_keys: dict entries holding [N, 4] wxyz quaternions; for the means they are
            sign-aligned to the first member (lowest index) of their voxel, then renormalized.

    Returns:
        unique_keys: [M] int64 ascending.
        merged: same structure as ``attributes`` with M rows (voxel order = unique_keys).
    """
    if mode not in MERGE_MODES:
        raise ValueError(f"mode: expected one of {MERGE_MODES}, got {mode!r}")
    if keys.ndim != 1:
        raise ValueError(f"keys: expected shape [N], got {tuple(keys.shape)}")
    n = keys.shape[0]
    items = {"": attributes} if isinstance(attributes, Tensor) else dict(attributes)
    for name, value in items.items():
        if value.shape[0] != n:
            raise ValueError(f"attributes{'[' + repr(name) + ']' if name else ''}: expected "
                             f"{n} rows, got {value.shape[0]}")
    unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    m = unique_keys.shape[0]
    rows = torch.arange(n, device=keys.device)

    if mode == "rand":
        priority = torch.rand(n, generator=generator, device=keys.device)
        best = priority.new_zeros(m).scatter_reduce(0, inverse, priority, "amax", include_self=False)
        candidate = torch.where(priority == best[inverse], rows, torch.full_like(rows, n))
        chosen = candidate.new_full((m,), n).scatter_reduce(0, inverse, candidate, "amin")
        merged = {name: value[chosen] for name, value in items.items()}
    else:
        if mode == "imp":
            if importance is None or importance.shape != (n,):
                raise ValueError(f"importance: mode 'imp' needs a [{n}] tensor, got "
                                 f"{None if importance is None else tuple(importance.shape)}")
            weights = importance.detach().to(torch.float64)
            group_total = weights.new_zeros(m).index_add_(0, inverse, weights)
            weights = torch.where(group_total[inverse] > 0, weights, torch.ones_like(weights))
        else:
            weights = torch.ones(n, dtype=torch.float64, device=keys.device)
        first = rows.new_full((m,), n).scatter_reduce(0, inverse, rows, "amin")
        merged = {}
        for name, value in items.items():
            if name in quaternion_keys and name != "":
                sign = torch.where((value * value[first][inverse]).sum(-1, keepdim=True) < 0, -1.0, 1.0)
                mean = _group_mean(value * sign.to(value.dtype), inverse, weights, m)
                norm = mean.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(mean.dtype).tiny)
                merged[name] = mean / norm
            else:
                merged[name] = _group_mean(value, inverse, weights, m)
    if isinstance(attributes, Tensor):
        return unique_keys, merged[""]
    return unique_keys, merged
