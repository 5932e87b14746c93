"""Region-adaptive hierarchical transform (RAHT) on an octree, CODEC.md §5.

``build_raht(voxels, depth)`` runs the tree walk once per geometry (vectorized numpy, one pass
per level) and stores, for each of the 3·D levels that has sibling pairs, the left/right slots
and the rotation weights (a, b): N − 1 pairs in total, O(N) memory. ``RahtPlan.forward`` and
``RahtPlan.inverse`` are differentiable torch ops on the attributes' device: each level is a
gather of the paired rows, a 2×2 rotation and a scatter. The transform is orthonormal, so the
backward of one direction is the other direction (exact, no autograd graph over 3·D levels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from compression.octree import check_depth

__all__ = ["RahtLevel", "RahtPlan", "build_raht", "morton_codes"]


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Put bit k of each 21-bit value at bit 3k. [N] uint64 -> [N] uint64."""
    v = v & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF),
                        (8, 0x100F00F00F00F00F), (4, 0x10C30C30C30C30C3),
                        (2, 0x1249249249249249)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton_codes(voxels: np.ndarray) -> np.ndarray:
    """Morton codes with z lowest: ``Σ z_k 2^(3k) + y_k 2^(3k+1) + x_k 2^(3k+2)``.

    Args:
        voxels: [N, 3] non-negative integer voxel coordinates (x, y, z), each < 2^21.

    Returns:
        [N] int64 codes.
    """
    v = np.asarray(voxels).astype(np.uint64)
    code = _spread_bits(v[:, 2]) | (_spread_bits(v[:, 1]) << np.uint64(1)) \
        | (_spread_bits(v[:, 0]) << np.uint64(2))
    return code.astype(np.int64)


@dataclass(frozen=True)
class RahtLevel:
    """Sibling pairs merged at one level (all on one device).

    slots: [2P] int64, the P left (even-code) slots followed by the P right (odd-code) slots.
    a, b: [P, 1] weights sqrt(wL/(wL+wR)), sqrt(wR/(wL+wR)).
    """

    slots: Tensor
    a: Tensor
    b: Tensor

    @property
    def num_pairs(self) -> int:
        return self.a.shape[0]


class RahtPlan:
    """Precomputed RAHT for one geometry.

    Attributes:
        n: number of voxels N.
        depth: octree depth D (the transform has 3·D levels; levels without pairs are skipped).
        order: [N] int64 (CPU); slot j holds input row ``order[j]`` (ascending Morton code).
        levels: the non-empty levels, finest first, on CPU (float64 weights).
    """

    def __init__(self, n: int, depth: int, order: Tensor, levels: list[RahtLevel]) -> None:
        self.n = n
        self.depth = depth
        self.order = order
        self.levels = levels
        inverse_order = torch.empty_like(order)
        inverse_order[order] = torch.arange(n, dtype=order.dtype)
        self._inverse_order = inverse_order
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, list[RahtLevel]]] = {}

    @property
    def num_pairs(self) -> int:
        """Total number of sibling pairs over all levels (N − 1)."""
        return sum(level.num_pairs for level in self.levels)

    def slot_levels(self) -> Tensor:
        """[N] int64 (CPU): for each coefficient slot, the index in ``levels`` of the level whose
        high-pass coefficient it holds; -1 for slot 0, the DC. Every other slot is the right
        slot of exactly one pair."""
        out = torch.full((self.n,), -1, dtype=torch.int64)
        for index, level in enumerate(self.levels):
            out[level.slots[level.num_pairs:]] = index
        return out

    def high_slots(self) -> Tensor:
        """[N - 1] int64 (CPU): the AC slots grouped by level (finest first), each level's in
        ascending slot order (the order in which a level's pairs were found)."""
        return torch.cat([level.slots[level.num_pairs:] for level in self.levels]) \
            if self.levels else torch.zeros(0, dtype=torch.int64)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "RahtPlan":
        """Cache the index and weight tensors on ``device`` (weights in ``dtype``); returns self."""
        self._tensors(torch.device(device), dtype)
        return self

    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, list[RahtLevel]]:
        key = (device, dtype)
        if key not in self._cache:
            levels = [RahtLevel(level.slots.to(device), level.a.to(device, dtype),
                                level.b.to(device, dtype)) for level in self.levels]
            self._cache[key] = (self.order.to(device), self._inverse_order.to(device), levels)
        return self._cache[key]

    def _check(self, name: str, tensor: Tensor) -> None:
        if tensor.ndim != 2 or tensor.shape[0] != self.n:
            raise ValueError(f"{name}: expected shape [{self.n}, C], got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {tensor.dtype}")

    def forward(self, attrs: Tensor) -> Tensor:
        """RAHT forward.

        Args:
            attrs: [N, C] float attributes, rows in input (voxel) order.

        Returns:
            [N, C] coefficients in Morton-slot order; row 0 is the DC (= sum / sqrt(N)).
        """
        self._check("attrs", attrs)
        return _RahtForward.apply(attrs, self)

    def inverse(self, coeffs: Tensor, exact: bool = False) -> Tensor:
        """RAHT inverse (the transpose of ``forward``).

        Args:
            coeffs: [N, C] coefficients in Morton-slot order.
            exact: rotate with plain products and sums in a fixed order (the same bits on
                every machine, docs/COMPACT_FORMAT.md §4) instead of fused multiply-adds.

        Returns:
            [N, C] attributes in input order.
        """
        self._check("coeffs", coeffs)
        return _RahtInverse.apply(coeffs, self, exact)

    __call__ = forward


def _rotate_levels(x: Tensor, levels: list[RahtLevel], transpose: bool,
                   exact: bool = False) -> None:
    """Apply the per-level 2×2 rotations to x [N, C] (slot order) in place.

    Analysis (finest level first): (L, R) -> (a·L + b·R, a·R - b·L). Transposed (coarsest level
    first): (L, H) -> (a·L - b·H, a·H + b·L). One gather and one scatter of 2P rows per level.
    ``exact``: each product rounded, then the sum or difference (no fused multiply-add, which
    ``addcmul_`` uses on some CPUs), so every machine computes the same bits.
    """
    sign = -1.0 if transpose else 1.0
    for level in (reversed(levels) if transpose else levels):
        p = level.num_pairs
        pair = x.index_select(0, level.slots)
        left, right = pair[:p], pair[p:]
        if exact:
            out = torch.cat([left * level.a + sign * (right * level.b),
                             right * level.a - sign * (left * level.b)])
        else:
            out = torch.empty_like(pair)
            torch.mul(left, level.a, out=out[:p]).addcmul_(right, level.b, value=sign)
            torch.mul(right, level.a, out=out[p:]).addcmul_(left, level.b, value=-sign)
        x.index_copy_(0, level.slots, out)


class _RahtForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attrs: Tensor, plan: RahtPlan) -> Tensor:  # type: ignore[override]
        order, _, levels = plan._tensors(attrs.device, attrs.dtype)
        x = attrs.index_select(0, order)
        _rotate_levels(x, levels, transpose=False)
        ctx.plan = plan
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return _RahtInverse.apply(grad.contiguous(), ctx.plan), None


class _RahtInverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coeffs: Tensor, plan: RahtPlan, exact: bool = False) -> Tensor:  # type: ignore[override]
        _, inverse_order, levels = plan._tensors(coeffs.device, coeffs.dtype)
        x = coeffs.clone()
        _rotate_levels(x, levels, transpose=True, exact=exact)
        ctx.plan = plan
        return x.index_select(0, inverse_order)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        return _RahtForward.apply(grad.contiguous(), ctx.plan), None, None


def build_raht(voxels: np.ndarray | Tensor, depth: int) -> RahtPlan:
    """Build the RAHT plan of one geometry (CODEC.md §5).

    Args:
        voxels: [N, 3] distinct integer voxel coordinates (x, y, z) in [0, 2^depth), any order.
        depth: octree depth D in [1, 21].

    Returns:
        The ``RahtPlan`` (CPU tensors; ``forward``/``inverse`` move them to the data's device).

    Raises:
        ValueError: bad depth, shape, range, or duplicate voxels.
    """
    depth = check_depth(depth)
    v = voxels.detach().cpu().numpy() if isinstance(voxels, Tensor) else np.asarray(voxels)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ValueError(f"voxels: expected shape [N, 3] with N >= 1, got {v.shape}")
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"voxels: expected integer coordinates, got {v.dtype}")
    if v.min() < 0 or v.max() >= (1 << depth):
        raise ValueError(f"voxels: coordinates must lie in [0, 2^{depth}), "
                         f"got [{v.min()}, {v.max()}]")
    codes = morton_codes(v)
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    if codes.size > 1 and np.any(codes[1:] == codes[:-1]):
        raise ValueError("voxels: duplicate voxel coordinates (merge Gaussians per voxel first)")

    slots = np.arange(codes.size, dtype=np.int64)
    weights = np.ones(codes.size, dtype=np.float64)
    levels: list[RahtLevel] = []
    for _ in range(3 * depth):
        if codes.size < 2:
            break
        parents = codes >> 1
        pair = np.flatnonzero(parents[:-1] == parents[1:])
        if pair.size:
            w_left, w_right = weights[pair], weights[pair + 1]
            w_sum = w_left + w_right
            levels.append(RahtLevel(
                slots=torch.from_numpy(np.concatenate([slots[pair], slots[pair + 1]])),
                a=torch.from_numpy(np.sqrt(w_left / w_sum)[:, None]),
                b=torch.from_numpy(np.sqrt(w_right / w_sum)[:, None]),
            ))
            weights[pair] = w_sum
            keep = np.ones(codes.size, dtype=bool)
            keep[pair + 1] = False
            slots, weights, parents = slots[keep], weights[keep], parents[keep]
        codes = parents
    return RahtPlan(int(order.size), depth, torch.from_numpy(order), levels)
