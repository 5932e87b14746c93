"""The quality ladder made continuous: a layout's ``--quality`` levels 1..9
(``Layout.quality_levels``) as a function of a real position, between and one level beyond them.

A size target (``compression.size_target``) searches along this line, so it takes whatever the
levels say today: the pruned fraction is interpolated linearly, the step, the voxel ratio and the
codebook reference geometrically (they span decades); beyond level 1 or 9 the end segment is
extended. At an integer position the settings are the level's own, so a search that lands on
one gives the file ``--quality`` gives.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

#: the positions a search may take: one level beyond the ladder at each end
LADDER_RANGE = (0.0, 10.0)
#: the most the extended ladder prunes (level 0 extends level 1's pruning)
MAX_PERCENT = 0.9
#: settings interpolated on a log scale (the others linearly)
_GEOMETRIC = ("base_step", "voxel_ratio", "codebook_reference")


def _segment(levels: Mapping[int, Mapping[str, Any]], position: float) -> tuple[int, int, float]:
    """The two levels whose segment holds ``position`` (the end segment beyond the ladder) and
    the fraction of the way from the first to the second (below 0 or above 1 beyond it)."""
    keys = sorted(levels)
    low = min(max(math.floor(position), keys[0]), keys[-2])
    return low, low + 1, position - low


def ladder_value(levels: Mapping[int, Mapping[str, Any]], name: str, position: float) -> float:
    """Setting ``name`` of the quality levels at a real ``position`` (an integer gives the
    level's own value).

    Raises:
        ValueError: ``position`` outside :data:`LADDER_RANGE`, or a ladder of fewer than two
            consecutive levels.
    """
    low_end, high_end = LADDER_RANGE
    if not low_end <= position <= high_end:
        raise ValueError(f"ladder position must lie in [{low_end}, {high_end}], got {position}")
    if len(levels) < 2 or sorted(levels) != list(range(min(levels), max(levels) + 1)):
        raise ValueError("the quality ladder needs at least two consecutive levels")
    if position == int(position) and int(position) in levels:
        return float(levels[int(position)][name])
    low, high, t = _segment(levels, position)
    a, b = float(levels[low][name]), float(levels[high][name])
    if name in _GEOMETRIC:
        return math.exp((1 - t) * math.log(a) + t * math.log(b))
    return min(max((1 - t) * a + t * b, 0.0), MAX_PERCENT)


def ladder_settings(levels: Mapping[int, Mapping[str, Any]], position: float
                    ) -> dict[str, float]:
    """The flags a quality level sets (pruned fraction, step, voxel ratio) at a real
    ``position`` (the codebook size is chosen at prepare, :func:`codebook_reference`)."""
    return {name: ladder_value(levels, name, position)
            for name in ("percent", "base_step", "voxel_ratio")}


def ladder_codebook_size(levels: Mapping[int, Mapping[str, Any]], position: float,
                         num_gaussians: int, reference_gaussians: int,
                         size_range: tuple[int, int]) -> int:
    """The codebook size at a real ``position`` for a model of ``num_gaussians`` coded
    Gaussians: at an integer position the level's ``codebook_reference`` ×
    sqrt(N / ``reference_gaussians``) rounded to a power of two within ``size_range``; between
    two integers the geometric interpolation of their sizes, rounded to an integer."""
    low_size, high_size = size_range

    def at(level: int) -> int:
        scaled = ladder_value(levels, "codebook_reference", float(level)) * math.sqrt(
            num_gaussians / reference_gaussians)
        return int(min(max(2 ** round(math.log2(scaled)), low_size), high_size))

    below = math.floor(position)
    t = position - below
    if t == 0:
        return at(below)
    a, b = at(below), at(below + 1)
    return int(round(math.exp((1 - t) * math.log(a) + t * math.log(b))))
