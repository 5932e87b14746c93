"""Size targets (``--target_size`` / ``--target_bits``): the settings whose bitstream lands
within [97 %, 100 %] of a byte budget, found without a finetune per try.

A *probe* is the codec's prepare + encode at one setting (seconds; the importance, which needs
the training views rendered, is computed once for every probe). :func:`search` probes along
the continuous quality ladder (``compression.ladder``): secant steps on the log size, every
other step a bisection, inside the bracket of the nearest probes below and above the window.
Where the size jumps over the window between two close positions (a new octree depth, a
codebook size), the finer side's depth and codebook are fixed and its pruned fraction is
searched instead, which moves the size a Gaussian at a time.

The finetune moves the coefficients the fixed steps quantize, so the size after it differs from
the probe's by a few percent. :func:`fit` corrects the finetuned state without training: steps
a quarter octave finer at a time while the file is below the window, then the fewest of the
least important voxels dropped (bisection on their count) that bring it under the target; the
finetuned values of the others are kept.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from compression.codec import Codec, CodecSettings, CodecState
from compression.importance import compute_importance
from compression.ladder import LADDER_RANGE, MAX_PERCENT, ladder_settings
from compression.pipeline import coefficients, importance_of, new_state
from compression.step_quantization import LevelQuantizer, choose_exponents, step_values

#: a target-driven file is at least this share of the target (and at most the target)
LOW_SHARE = 0.97
#: where the search starts (the layouts' default quality)
START_POSITION = 5.0
#: log size per ladder level assumed before two probes measure it (about 1.35x per level)
LOG_SIZE_PER_LEVEL = 0.3
#: two ladder positions this close bracket a jump: the pruned fraction is searched instead
JUMP_GAP = 0.05
#: probes of one search at most (ladder and pruned fraction together)
MAX_PROBES = 24
#: finer steps tried at most after the finetune, a quarter octave each
MAX_FINER_STEPS = 8


@dataclass(frozen=True)
class SizeTarget:
    """A byte budget: ``size_bytes``, or ``bits`` per input Gaussian (bytes known once the
    model is)."""

    size_bytes: Optional[int] = None
    bits: Optional[float] = None

    def bytes_for(self, num_input: int) -> int:
        """The budget in bytes for a model of ``num_input`` Gaussians (at least 1)."""
        if self.size_bytes is not None:
            return int(self.size_bytes)
        return max(1, math.floor(self.bits * num_input / 8))

    def describe(self, num_input: int) -> str:
        """How messages name the target."""
        if self.size_bytes is not None:
            return f"--target_size {self.size_bytes:,} bytes"
        return (f"--target_bits {self.bits:g} ({self.bytes_for(num_input):,} bytes for "
                f"{num_input:,} Gaussians)")


def window(target_bytes: int) -> tuple[int, int]:
    """The sizes a target accepts: ``(ceil(0.97 · target), target)``."""
    return math.ceil(LOW_SHARE * target_bytes), int(target_bytes)


@dataclass(frozen=True)
class Probe:
    """One encode: where (``stage`` "ladder", "pruning" or "finetuned") and with what, and
    the size it gave. ``position`` None: the finetuned state's own settings."""

    stage: str
    position: Optional[float]
    percent: Optional[float]
    base_step: Optional[float]
    voxel_ratio: Optional[float]
    depth: int
    codebook_size: int
    num_gaussians: int
    size_bytes: int
    seconds: float


@dataclass
class SearchResult:
    """What :func:`search` chose.

    Attributes:
        state, params: the chosen probe's prepared state and parameters (what the finetune
            starts from).
        settings: the settings that probe ran with.
        probes: every probe, in order.
        outcome: "window" (a probe within the goal), "finest" (the finest settings are below
            it), or "nearest" (none within: the largest probe below the goal's top).
    """

    state: CodecState
    params: dict[str, Tensor]
    settings: CodecSettings
    probes: list[Probe]
    outcome: str


class TargetUnreachable(ValueError):
    """A target below what the coarsest settings reach (the message says what they reach)."""


def encoded_size(codec: Codec, state: CodecState, params: Mapping[str, Tensor]) -> int:
    """Bytes of the file ``codec`` would write for ``state`` and ``params`` (nothing written;
    codecs with one-file bitstreams, such as the compact one)."""
    return len(codec.encode(state, params).to_bytes())


def settings_at(base: CodecSettings, position: float) -> CodecSettings:
    """``base`` with the quality ladder's settings at ``position`` (no quality level: a file
    written with them says 0)."""
    return dataclasses.replace(base, quality=None, ladder_position=float(position),
                               **ladder_settings(base.layout.quality_levels, position))


def _describe(probe: Probe) -> str:
    return (f"{probe.size_bytes:,} bytes at ladder position {probe.position:g} "
            f"({probe.percent:.0%} pruned, step {probe.base_step:.3g}, depth {probe.depth}, "
            f"codebook {probe.codebook_size})")


def search(codec: Codec, params: Mapping[str, Tensor], cameras: Optional[Sequence],
           base: CodecSettings, goal: tuple[int, int], *, seed: int = 0,
           backend: str = "auto", what: str = "the target") -> SearchResult:
    """Settings whose encoded size lies within ``goal`` = (low, high) bytes.

    Args:
        codec: the layout's codec (``base.layout.codec``; a one-file bitstream).
        params, cameras: the model and its training views (None: camera-free importance).
        base: resolved settings without the searched ones (``settings.TARGET_REPLACES``);
            a given depth or codebook size stays fixed.
        goal: the sizes to land in.
        seed: seed of every probe's random choices (a probe is reproducible).
        backend: rasterizer backend of the importance.
        what: how the unreachable error names the target.

    Raises:
        TargetUnreachable: the coarsest ladder position is above ``goal``'s top.
    """
    low, high = goal
    device = params["xyz"].device
    importance = importance_of(params, cameras, base.imp_beta,
                               area=base.layout.camera_free_area, backend=backend)
    probes: list[Probe] = []
    best: dict[str, Any] = {}

    def run(settings: CodecSettings, stage: str) -> Probe:
        start = time.perf_counter()
        state, prepared = codec.prepare(params, cameras, settings,
                                        torch.Generator(device=device).manual_seed(seed),
                                        backend=backend, importance=importance)
        size = encoded_size(codec, state, prepared)
        probe = Probe(stage, settings.ladder_position, settings.percent, settings.base_step,
                      settings.voxel_ratio, state.depth,
                      0 if state.codebook is None else int(state.codebook.shape[0]),
                      state.num_gaussians, size, time.perf_counter() - start)
        probes.append(probe)
        if size <= high and size > best.get("size", -1):
            best.update(size=size, state=state, params=prepared, settings=settings)
        return probe

    def result(outcome: str) -> SearchResult:
        return SearchResult(best["state"], best["params"], best["settings"], probes, outcome)

    below, above = _ladder(run, base, goal)
    if below is None:
        raise TargetUnreachable(
            f"{what} is below what --layout {base.layout.name} reaches on this model: "
            f"{_describe(above)} is its coarsest")
    if low <= best["size"]:
        return result("window")
    if above is None:
        return result("finest")
    _pruning(run, dataclasses.replace(settings_at(base, above.position), depth=above.depth,
                                      codebook_size=above.codebook_size), above.size_bytes,
             goal)
    return result("window" if low <= best["size"] else "nearest")


def _ladder(run: Callable[[CodecSettings, str], Probe], base: CodecSettings,
            goal: tuple[int, int]) -> tuple[Optional[Probe], Optional[Probe]]:
    """Probe the ladder until one lands in ``goal``, the bracket closes on a jump or an end
    answers: ``(below, above)``, the nearest probes at most and above the top (either None
    when no probe fell on that side); ``below`` in the goal when one landed."""
    low, high = goal
    first, last = LADDER_RANGE
    aim = math.log((low + high) / 2)
    below: Optional[Probe] = None
    above: Optional[Probe] = None
    position, step = START_POSITION, 0
    while step < MAX_PROBES:
        step += 1
        probe = run(settings_at(base, position), "ladder")
        if probe.size_bytes > high:
            above = probe if above is None or probe.position < above.position else above
        else:
            below = probe if below is None or probe.position > below.position else below
        if below is not None and below.size_bytes >= low:
            return below, above
        if above is None:
            if below.position >= last:
                return below, None
            position = min(last, below.position + max(
                0.25, (aim - math.log(below.size_bytes)) / LOG_SIZE_PER_LEVEL))
        elif below is None:
            if above.position <= first:
                return None, above
            position = max(first, above.position - max(
                0.25, (math.log(above.size_bytes) - aim) / LOG_SIZE_PER_LEVEL))
        elif above.position - below.position <= JUMP_GAP:
            return below, above
        else:
            gap = above.position - below.position
            if step % 2 or (above.depth, above.codebook_size) != (below.depth,
                                                                  below.codebook_size):
                position = below.position + gap / 2  # a secant across a jump is no guide
            else:
                slope = math.log(above.size_bytes / below.size_bytes) / gap
                position = below.position + min(max(
                    (aim - math.log(below.size_bytes)) / slope, 0.1 * gap), 0.9 * gap)
    return below, above


def _pruning(run: Callable[[CodecSettings, str], Probe], fixed: CodecSettings, size: int,
             goal: tuple[int, int]) -> None:
    """Search the pruned fraction of ``fixed`` (depth and codebook set; ``size`` its file)
    upwards from its own until a probe lands in ``goal`` or the bracket is a single
    Gaussian's worth (secant steps on the size, kept inside the bracket)."""
    low, high = goal
    aim = (low + high) / 2
    over = (fixed.percent, float(size))  # (pruned fraction, size) still above the top
    under: Optional[tuple[float, float]] = None
    for _ in range(MAX_PROBES // 2):
        if under is None:  # the size falls about in proportion to the Gaussians kept
            percent = min(1 - (1 - over[0]) * aim / over[1], (over[0] + MAX_PERCENT) / 2)
        else:
            share = (over[1] - aim) / max(over[1] - under[1], 1.0)
            percent = over[0] + min(max(share, 0.1), 0.9) * (under[0] - over[0])
        probe = run(dataclasses.replace(fixed, percent=percent), "pruning")
        if low <= probe.size_bytes <= high:
            return
        if probe.size_bytes > high:
            over = (percent, float(probe.size_bytes))
        else:
            under = (percent, float(probe.size_bytes))
        if under is not None and under[0] - over[0] < 0.5 / max(probe.num_gaussians, 1):
            return


# ------------------------------------------------------------------ after the finetune

@torch.no_grad()
def _subset_state(state: CodecState, params: Mapping[str, Tensor], keep: Tensor,
                  finer: int) -> tuple[CodecState, dict[str, Tensor]]:
    """The state and parameters of the voxels ``keep`` (bool [N]) with every column's base
    step ``finer`` quarter octaves finer (per-level coarsening redone), codebook kept."""
    sub = {name: value.detach()[keep] for name, value in params.items()}
    indices = None if state.vq_indices is None else state.vq_indices[keep]
    out = new_state(state.layout, sub, state.depth, state.keys[keep], state.bbox,
                    codebook=None if state.codebook is None else state.codebook.detach(),
                    vq_indices=indices, num_input=state.num_input, quality=state.quality,
                    codebook_exponent=state.codebook_exponent)
    out.up = state.up
    bases = state.quantizer.exponents.min(dim=1).values - finer
    exponents = choose_exponents(coefficients(out, sub), out.plan.slot_levels(),
                                 len(out.plan.levels), step_values(bases).to(torch.float64))
    out.quantizer = LevelQuantizer(exponents, out.plan.slot_levels()).to(state.keys.device)
    out.eval()
    return out, sub


def fit(codec: Codec, state: CodecState, params: Mapping[str, Tensor],
        cameras: Optional[Sequence], goal: tuple[int, int], *, beta: float,
        backend: str = "auto") -> tuple[CodecState, dict[str, Tensor], list[Probe]]:
    """Bring a finetuned state's file into ``goal`` without training (module docstring):
    ``(state, params, probes)``, the input itself when its file already fits.

    The voxels dropped are the least important under the finetuned values (importance
    exponent ``beta`` on ``cameras``; None: by opacity), as few as bring the file into the
    goal's top quarter, or else the fewest that bring it under the top (bisection on their
    count, secant steps on the size): every voxel dropped without training costs quality.
    """
    low, high = goal
    probes: list[Probe] = []

    def measure(candidate: CodecState, values: Mapping[str, Tensor], stage: str) -> int:
        start = time.perf_counter()
        size = encoded_size(codec, candidate, values)
        probes.append(Probe(stage, None, None, None, None, candidate.depth,
                            0 if candidate.codebook is None else int(candidate.codebook.shape[0]),
                            candidate.num_gaussians, size, time.perf_counter() - start))
        return size

    state.eval()
    size = measure(state, params, "finetuned")
    if low <= size <= high:
        return state, params, probes
    n = state.num_gaussians
    every = torch.ones(n, dtype=torch.bool, device=state.keys.device)
    current, values, finer = state, dict(params), 0
    while size < low and finer < MAX_FINER_STEPS:
        finer += 1
        current, values = _subset_state(state, params, every, finer)
        size = measure(current, values, "finer steps")
    if size <= high:
        return current, values, probes
    with torch.no_grad():
        shown = {name: value.detach() for name, value in codec.simulate(current, values).items()}
    scores = compute_importance(shown["means"], shown["quats"], shown["scales"],
                                shown["opacities"], cameras, backend=backend, beta=beta,
                                area=state.layout.camera_free_area)
    order = torch.argsort(scores, stable=True)
    near_top = high - (high - low) // 4
    aim = (near_top + high) / 2
    over = (0, size)  # (voxels dropped, size) of the most dropped still above the top
    under: Optional[tuple[int, int]] = None
    fallback = (current, values)
    while (under is None or under[0] - over[0] > 1) and len(probes) < MAX_PROBES:
        if under is None:  # the size falls about in proportion to the voxels
            guess = over[0] + math.ceil((over[1] - aim) / over[1] * (n - over[0]))
            dropped = min(n - 2, max(guess, 2 * over[0], over[0] + 1))
        else:
            share = (over[1] - aim) / max(over[1] - under[1], 1)
            dropped = min(max(over[0] + round(share * (under[0] - over[0])), over[0] + 1),
                          under[0] - 1)
        keep = every.clone()
        keep[order[:dropped]] = False
        candidate, kept = _subset_state(state, params, keep, finer)
        size = measure(candidate, kept, "dropped voxels")
        if size > high:
            over = (dropped, size)
            if dropped >= n - 2:
                break
            continue
        under, fallback = (dropped, size), (candidate, kept)
        if size >= near_top:
            break
    return (*fallback, probes)
