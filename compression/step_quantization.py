"""Uniform scalar quantization of RAHT AC coefficients, one step per (column, RAHT level).

The compact layout's quantizer scheme ("level"). A step is a power of 2^(1/4), stored as its
integer exponent: step = 2^(e/4), |e| <= :data:`EXPONENT_LIMIT`; the float32 step comes from
exactly representable values (``entropy.quarter_powers``), so encoder and decoder agree on any
IEEE machine. For an AC coefficient x of column c in level l::

    q = round(x / step[c, l])        (round half to even; |q| <= MAX_CODE, exact in float32)
    x̂ = q · step[c, l]

The finetune's fake quantization computes x̂ with exactly these float ops and passes the
gradient straight through, so decoding the codes reproduces what the finetune rendered bit for
bit. Steps are fixed when the codec is prepared (no ranges move during the finetune).

The compact layout's VQ codebook is stored the same way, on one uniform grid whose step
(:func:`codebook_exponent`) makes the grid's rounding add a small share of the
vector quantizer's own squared error: negligible distortion at a fraction of float16's bytes.

Rate model (:func:`geometric_entropy_bits`, :meth:`LevelQuantizer.estimated_bits`): the bits of
a (column, level) segment of n codes whose mean |x / step| is b, estimated as n times the
entropy of the two-sided geometric distribution on the integers with mean |k| = b (the largest
entropy of any integer distribution with that mean; the coder's Laplace models are of its
kind). Differentiable in the coefficients, so the compact finetune can weigh the bits it adds
against the PSNR it wins (``FinetuneSchedule.rate_weight``).

Step choice (:func:`choose_exponents`): a base step times a weight per column (the layout's
``step_weights``, measured: after the finetune, a finer Euler step buys the most PSNR per bit
and a finer opacity step the least), the same at every level, coarsened where a (column, level) segment would otherwise
need an alphabet wider than the entropy coder's (with room for the finetune's drift).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from compression.entropy import MAX_ALPHABET, quarter_powers

__all__ = ["CODEBOOK_NOISE_SHARE", "EXPONENT_LIMIT", "FAITHFUL_CODEBOOK_NOISE_SHARE", "MAX_CODE",
           "LevelQuantizer", "choose_exponents", "codebook_exponent", "exponent_of",
           "fake_quantize", "geometric_entropy_bits", "grid_codes", "step_values"]

#: |e| of a step 2^(e/4): steps from 2^-24 to 2^24
EXPONENT_LIMIT = 96
#: |q| of a code: below 2^24, so q and q·step are exact in float32
MAX_CODE = (1 << 24) - 1
#: prepare keeps every segment's codes within ±this (a span of a quarter of the entropy coder's
#: alphabet), so that a finetune that grows the coefficients still codes
_PREPARED_CODE_LIMIT = MAX_ALPHABET // 8
#: the codebook grid's rounding error (step² / 12 per value) is at most this share of the
#: vector quantizer's mean squared error at the levels that finetune (README, "Where the bits
#: and the dB go": 5 % instead of 1 % saves a quarter of the codebook's bytes for 0.002 dB
#: after the finetune), and FAITHFUL_CODEBOOK_NOISE_SHARE at the levels without one
CODEBOOK_NOISE_SHARE = 0.05
FAITHFUL_CODEBOOK_NOISE_SHARE = 0.01
#: the smallest mean |code| the rate model takes (below it a segment's estimate is flat: about
#: 2e-5 bits per code)
_RATE_MEAN_FLOOR = 1e-6


def exponent_of(step: float) -> int:
    """The nearest quarter-octave exponent of a step (step ≈ 2^(e/4)).

    Raises:
        ValueError: a step that is not positive or lies outside 2^(±EXPONENT_LIMIT/4).
    """
    if not step > 0:
        raise ValueError(f"a quantization step must be > 0, got {step}")
    exponent = int(np.rint(4 * np.log2(step)))
    if abs(exponent) > EXPONENT_LIMIT:
        raise ValueError(f"a quantization step must lie in [2^-{EXPONENT_LIMIT // 4}, "
                         f"2^{EXPONENT_LIMIT // 4}], got {step}")
    return exponent


def step_values(exponents: np.ndarray | Tensor) -> Tensor:
    """float32 steps 2^(e/4) of integer exponents (same shape)."""
    e = exponents.cpu().numpy() if isinstance(exponents, Tensor) else np.asarray(exponents)
    return torch.from_numpy(quarter_powers(e).astype(np.float32))


class _FakeQuantize(torch.autograd.Function):
    """round(x / step) · step with an identity gradient (exactly the decoder's value)."""

    @staticmethod
    def forward(ctx, x: Tensor, steps: Tensor) -> Tensor:  # type: ignore[override]
        return torch.round(x / steps) * steps

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def fake_quantize(x: Tensor, steps: Tensor) -> Tensor:
    """round(x / steps) · steps (the decoder's value, bit for bit) with an identity gradient."""
    return _FakeQuantize.apply(x, steps)


@torch.no_grad()
def grid_codes(values: Tensor, steps: Tensor, what: str) -> Tensor:
    """int64 codes round(values / steps), the integers :func:`fake_quantize` rounds to.

    Raises:
        ValueError: a code beyond ±MAX_CODE (a step far too fine for ``what``, named in the
            message).
    """
    codes = torch.round(values / steps.to(values.dtype))
    if codes.numel() and float(codes.abs().max()) > MAX_CODE:
        raise ValueError(f"{what} exceed ±{MAX_CODE} codes: the step is too fine for them")
    return codes.to(torch.int64)


def geometric_entropy_bits(mean_abs: Tensor) -> Tensor:
    """Entropy in bits of the two-sided geometric distribution P(k) ∝ r^|k| on the integers
    whose mean |k| is ``mean_abs`` (elementwise, differentiable; about log2(2e·b) for large b,
    0 at b = 0). From mean |k| = 2r / (1 − r²): r = b / (1 + sqrt(1 + b²)), and
    H = log2((1 + r) / (1 − r)) − b·log2(r)."""
    b = mean_abs.clamp_min(_RATE_MEAN_FLOOR)
    ratio = b / (1 + torch.sqrt(1 + b * b))
    return torch.log2((1 + ratio) / (1 - ratio)) - b * torch.log2(ratio)


def _smallest_exponent_for(largest: Tensor) -> Tensor:
    """Per entry, the smallest e with largest / 2^(e/4) within the prepared code limit."""
    return torch.ceil(4 * torch.log2(largest.clamp_min(1e-300) / _PREPARED_CODE_LIMIT))


class LevelQuantizer(nn.Module):
    """The fixed steps of C columns over the L levels of one RAHT plan.

    Args:
        exponents: [C, L] integer step exponents.
        slot_levels: [N] level of each coefficient slot (``RahtPlan.slot_levels``; -1 = DC).

    Buffers: ``exponents`` [C, L] int64; ``slot_steps`` [N - 1, C] float32, the step of every AC
    coefficient (row s - 1 for slot s); ``ac_levels`` [N - 1] int64, the level of every AC
    coefficient, and ``level_counts`` [L] int64, how many each level holds (the rate model's
    segment sizes, fixed with the plan: no count, and no device sync, in a finetune step).
    """

    def __init__(self, exponents: Tensor, slot_levels: Tensor) -> None:
        super().__init__()
        exponents = torch.as_tensor(exponents, dtype=torch.int64)
        if exponents.ndim != 2 or (exponents.numel()
                                   and int(exponents.abs().max()) > EXPONENT_LIMIT):
            raise ValueError(f"exponents: expected [C, L] integers within ±{EXPONENT_LIMIT}")
        self.register_buffer("exponents", exponents.clone())
        self.register_buffer("slot_steps", self.steps_of(exponents, slot_levels))
        ac_levels = torch.as_tensor(slot_levels, dtype=torch.int64)[1:].cpu().clone()
        self.register_buffer("ac_levels", ac_levels)
        self.register_buffer("level_counts",
                             torch.bincount(ac_levels, minlength=int(exponents.shape[1])))

    @staticmethod
    def steps_of(exponents: Tensor | np.ndarray, slot_levels: Tensor | np.ndarray) -> Tensor:
        """[N - 1, C] float32 step of every AC slot from [C, L] exponents and [N] slot levels."""
        levels = torch.as_tensor(slot_levels, dtype=torch.int64)[1:].cpu()
        return step_values(exponents)[:, levels].t().contiguous()

    @property
    def n_columns(self) -> int:
        """C."""
        return int(self.exponents.shape[0])

    def forward_coeffs(self, coeffs: Tensor) -> Tensor:
        """[N, C] RAHT coefficients → the same with the AC rows fake-quantized (DC row 0 passes
        through); straight-through gradient."""
        if coeffs.ndim != 2 or coeffs.shape[1] != self.n_columns \
                or coeffs.shape[0] != self.slot_steps.shape[0] + 1:
            raise ValueError(f"coeffs: expected [{self.slot_steps.shape[0] + 1}, "
                             f"{self.n_columns}], got {tuple(coeffs.shape)}")
        steps = self.slot_steps.to(coeffs.dtype)
        return torch.cat([coeffs[:1], fake_quantize(coeffs[1:], steps)])

    @torch.no_grad()
    def quantize(self, coeffs: Tensor) -> Tensor:
        """[N, C] coefficients → [N - 1, C] int64 AC codes.

        Raises:
            ValueError: a code beyond ±MAX_CODE (a step far too fine for its coefficients).
        """
        return grid_codes(coeffs[1:], self.slot_steps, "quantized RAHT coefficients")

    def estimated_bits(self, coeffs: Tensor) -> Tensor:
        """The rate model's bits for the AC codes of [N, C] coefficients (module docstring):
        the sum over (column, level) segments of n · :func:`geometric_entropy_bits` of their
        mean |x / step|; differentiable in ``coeffs``."""
        scaled = coeffs[1:].abs() / self.slot_steps.to(coeffs.dtype)
        sums = scaled.new_zeros((self.level_counts.shape[0], scaled.shape[1])).index_add_(
            0, self.ac_levels, scaled)
        counts = self.level_counts.to(scaled.dtype)[:, None]
        return (counts * geometric_entropy_bits(sums / counts.clamp_min(1))).sum()

    @staticmethod
    def dequantize(codes: Tensor, slot_steps: Tensor) -> Tensor:
        """[N - 1, C] codes → x̂ = q · step (float32), the value the finetune rendered."""
        return codes.to(torch.float32) * slot_steps


@torch.no_grad()
def choose_exponents(coeffs: Tensor, slot_levels: Tensor, n_levels: int,
                     column_steps: Tensor) -> Tensor:
    """Step exponents [C, L] for one plan's coefficients.

    Every level of column c starts at the exponent of ``column_steps[c]`` (base step × the
    column's weight); a (column, level) segment whose largest |code| would exceed a quarter of
    the entropy coder's alphabet gets the smallest coarser step that fits.

    Args:
        coeffs: [N, C] RAHT coefficients (row 0 = DC, not quantized).
        slot_levels: [N] level of each slot (-1 for the DC).
        n_levels: L.
        column_steps: [C] target step per column.
    """
    if not bool(torch.isfinite(coeffs).all()):
        raise ValueError("RAHT coefficients are not finite (NaN or infinite attributes)")
    columns = coeffs.shape[1]
    base = torch.tensor([exponent_of(float(step)) for step in column_steps], dtype=torch.int64)
    levels = torch.as_tensor(slot_levels, device=coeffs.device)[1:, None].expand(-1, columns)
    largest = coeffs.new_zeros((n_levels, columns), dtype=torch.float64).scatter_reduce_(
        0, levels, coeffs[1:].detach().abs().to(torch.float64), "amax").cpu()
    # smallest e >= base with largest / 2^(e/4) <= limit
    needed = _smallest_exponent_for(largest)
    exponents = torch.maximum(base[None, :], needed.to(torch.int64)).t().contiguous()
    if exponents.numel() and int(exponents.max()) > EXPONENT_LIMIT:
        raise ValueError("RAHT coefficients too large to quantize")
    return exponents


@torch.no_grad()
def codebook_exponent(codebook: Tensor, vq_mse: float, step: Optional[float] = None,
                      share: float = CODEBOOK_NOISE_SHARE) -> int:
    """The step exponent of a VQ codebook's grid: the coarsest quarter-octave step whose
    rounding noise, step² / 12, is at most ``share`` × ``vq_mse`` (the mean squared error of
    the vectors against their codebook rows), or the exponent of ``step``
    when given (a codebook that is the model's own palette has no k-means error to scale
    with), made coarser where the codes would exceed the prepared code limit.

    Raises:
        ValueError: a codebook that is not finite.
    """
    if not bool(torch.isfinite(codebook).all()):
        raise ValueError("the VQ codebook is not finite")
    largest = codebook.detach().abs().max().to(torch.float64).cpu() if codebook.numel() \
        else torch.zeros((), dtype=torch.float64)
    needed = int(_smallest_exponent_for(largest))
    if step is not None:
        target = exponent_of(step)
    else:
        target = (math.floor(2 * math.log2(12 * share * vq_mse)) if vq_mse > 0
                  else -EXPONENT_LIMIT)
    return min(max(target, needed, -EXPONENT_LIMIT), EXPONENT_LIMIT)
