"""Per-block scalar quantization of the RAHT AC coefficients (CODEC.md §6).

Blocks are contiguous runs of ``split_length(L, B)`` rows of each column; quantizer index for
column c, block j is ``c·B + j`` (the seed's ``qas[c*57 + j]``).

VanillaQuan (min-max, 1..16 bits), per quantizer, on every *training* forward::

    max <- max(max, block max, 0);  min <- min(min, block min, 0)
    scale = (max - min) / (2^b - 1)
    zero_point = round(clamp(2^b - 1 - max / scale, 0, 2^b - 1))
    q = round(clamp(zero_point + x / scale, 0, 2^b - 1))      (round half to even)
    x_hat = scale · (q - zero_point)                           (straight-through gradient)

A zero-range quantizer (scale = 0) gives x_hat = 0, never NaN. Evaluation mode does not move
the ranges.

LsqQuan (learned step s, 2..16 bits), signed codes in [-2^(b-1), 2^(b-1) - 1]::

    x_hat = round(clamp(x / s, -Qn, Qp)) · s,  Qn = 2^(b-1), Qp = 2^(b-1) - 1
    s_init = 2·mean|x| / sqrt(Qp); grad(s) scaled by 1 / sqrt(numel · Qp)

stored as (scale = s, zero_point = 2^(b-1)) for the unsigned codes q + 2^(b-1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "BlockQuantizer", "LsqQuan", "QuantizerView", "VanillaQuan", "block_ids", "dequantize",
    "split_length", "storage_dtype", "torch_code_dtype",
]

QUANTIZER_KINDS = ("vanilla", "lsq")
MAX_BITS = 16


def split_length(length: int, n_block: int) -> list[int]:
    """Block sizes: f = L // B, r = L - f·B; the first r blocks get f + 1, the rest f.

    Raises:
        ValueError: negative length or n_block < 1.
    """
    if length < 0 or n_block < 1:
        raise ValueError(f"split_length: expected length >= 0 and n_block >= 1, "
                         f"got length={length}, n_block={n_block}")
    base, rest = divmod(int(length), int(n_block))
    return [base + 1] * rest + [base] * (n_block - rest)


def block_ids(length: int, n_block: int, device: torch.device | str | None = None) -> Tensor:
    """Block index of every row: [L] int64 in [0, B), contiguous runs of ``split_length``."""
    sizes = torch.tensor(split_length(length, n_block), device=device)
    return torch.repeat_interleave(torch.arange(n_block, device=device), sizes, output_size=length)


def torch_code_dtype(bits: int) -> torch.dtype:
    """In-memory code dtype: uint8 for b <= 8, int32 otherwise (torch has little uint16 math)."""
    return torch.uint8 if bits <= 8 else torch.int32


def storage_dtype(bits: int) -> np.dtype:
    """On-disk code dtype: uint8 for b <= 8, uint16 otherwise."""
    return np.dtype(np.uint8) if bits <= 8 else np.dtype(np.uint16)


def _check_bits(bits: int, kind: str) -> int:
    low = 2 if kind == "lsq" else 1
    if not low <= int(bits) <= MAX_BITS:
        raise ValueError(f"bits: {kind} quantization needs {low} <= bits <= {MAX_BITS}, got {bits}")
    return int(bits)


def _round_ste(x: Tensor) -> Tensor:
    """round (half to even) with an identity gradient."""
    return x + (torch.round(x) - x).detach()


def _safe_scale(scale: Tensor) -> Tensor:
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _compute_dtype(bits: int, dtype: torch.dtype) -> torch.dtype:
    """float32 cannot resolve zp + x / scale to 1/2 near 2^16: wide codes compute in float64."""
    return torch.float64 if bits > 8 else dtype


def _codes(x: Tensor, safe_scale: Tensor, zero_point: Tensor, bits: int) -> Tensor:
    """Unsigned float codes round(clamp(zp + x / scale, 0, 2^b - 1)), broadcasting."""
    return torch.div(x, safe_scale).add_(zero_point).clamp_(0.0, float(2 ** bits - 1)).round_()


def dequantize(codes: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
    """x_hat = scale · (codes - zero_point), broadcasting (in scale's dtype)."""
    return scale * (codes.to(scale.dtype) - zero_point)


def _vanilla_scale_zero_point(min_val: Tensor, max_val: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    q_max = float(2 ** bits - 1)
    scale = (max_val - min_val) / q_max
    zero_point = torch.round(torch.clamp(q_max - max_val / _safe_scale(scale), 0.0, q_max))
    return scale, zero_point


@dataclass(frozen=True)
class _BlockGroup:
    """Consecutive blocks of equal size: rows [row_start, row_end) = blocks [first, last) × size."""

    row_start: int
    row_end: int
    first: int
    last: int
    size: int


def _block_groups(length: int, n_block: int) -> list[_BlockGroup]:
    """``split_length`` as at most two groups of equal-size, non-empty blocks."""
    base, rest = divmod(length, n_block)
    groups = [_BlockGroup(0, rest * (base + 1), 0, rest, base + 1),
              _BlockGroup(rest * (base + 1), length, rest, n_block, base)]
    return [g for g in groups if g.size > 0 and g.last > g.first]


def _blockwise(fn: Callable[..., Tensor], groups: list[_BlockGroup], x: Tensor,
               *states: Tensor) -> Tensor:
    """Apply ``fn(x_blocks [nb, size, C], *state_blocks [nb, 1, C])`` per group; -> [L, C].

    ``states`` are (C, B) tensors; blocks are contiguous row runs of ``x`` [L, C].
    """
    outs = []
    for g in groups:
        xv = x[g.row_start:g.row_end].reshape(g.last - g.first, g.size, x.shape[1])
        sv = [st[:, g.first:g.last].t().unsqueeze(1) for st in states]
        outs.append(fn(xv, *sv).reshape(g.row_end - g.row_start, x.shape[1]))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


class _VanillaFakeQuant(torch.autograd.Function):
    """x_hat = scale · (codes - zp) on rows ``skip:`` (rows before pass through), identity gradient.

    Writes into one output buffer (no cat), so the backward costs nothing.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zero_point: Tensor, bits: int,  # type: ignore[override]
                groups: list[_BlockGroup], skip: int) -> Tensor:
        out = torch.empty_like(x)
        out[:skip] = x[:skip]
        dtype = _compute_dtype(bits, x.dtype)
        scale, zero_point = scale.to(dtype), zero_point.to(dtype)
        safe = _safe_scale(scale)
        q_max = float(2 ** bits - 1)
        ac, out_ac = x[skip:], out[skip:]
        for g in groups:
            shape = (g.last - g.first, g.size, x.shape[1])
            xv = ac[g.row_start:g.row_end].view(shape)
            ov = out_ac[g.row_start:g.row_end].view(shape)
            s, z, ss = (t[:, g.first:g.last].t().unsqueeze(1) for t in (scale, zero_point, safe))
            if dtype == x.dtype:
                torch.div(xv, ss, out=ov).add_(z).clamp_(0.0, q_max).round_().sub_(z).mul_(s)
            else:
                ov.copy_(_codes(xv.to(dtype), ss, z, bits).sub_(z).mul_(s))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None, None]:  # type: ignore[override]
        return grad, None, None, None, None, None


@dataclass(frozen=True)
class QuantizerView:
    """Read-only state of one (column, block) quantizer; 0-d tensors (views of the buffers).

    Kept on purpose for the seed's documented ``qas[c*B + j]`` indexing (``init_qas``' result).
    """

    column: int
    block: int
    scale: Tensor
    zero_point: Tensor
    min_val: Tensor
    max_val: Tensor


class BlockQuantizer(nn.Module):
    """All C·B quantizers of the RAHT AC coefficients as batched (C, B) state tensors.

    Args:
        n_columns: C, columns of the attribute matrix.
        n_block: B, blocks per column.
        bits: b, 1..16 for "vanilla", 2..16 for "lsq".
        kind: "vanilla" (running min-max ranges) or "lsq" (learned step, parameter ``step``).

    Buffers (C, B) float32: ``scale``, ``zero_point``, ``min_val``, ``max_val``; plus
    ``initialized`` (bool). For LSQ, min_val/max_val are the representable range
    (-Qn·s, Qp·s). Block reductions use the contiguous block layout (reshape per group of
    equal-size blocks), not a loop over quantizers.
    """

    def __init__(self, n_columns: int, n_block: int, bits: int = 8, kind: str = "vanilla") -> None:
        super().__init__()
        if kind not in QUANTIZER_KINDS:
            raise ValueError(f"kind: expected one of {QUANTIZER_KINDS}, got {kind!r}")
        if n_columns < 1 or n_block < 1:
            raise ValueError(f"BlockQuantizer: expected n_columns >= 1 and n_block >= 1, "
                             f"got {n_columns}, {n_block}")
        self.n_columns, self.n_block = int(n_columns), int(n_block)
        self.bits = _check_bits(bits, kind)
        self.kind = kind
        shape = (self.n_columns, self.n_block)
        self.register_buffer("min_val", torch.zeros(shape))
        self.register_buffer("max_val", torch.zeros(shape))
        self.register_buffer("scale", torch.zeros(shape))
        self.register_buffer("zero_point", torch.zeros(shape))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.step = nn.Parameter(torch.zeros(shape)) if kind == "lsq" else None

    def __len__(self) -> int:
        return self.n_columns * self.n_block

    def __getitem__(self, index: int) -> QuantizerView:
        if not -len(self) <= index < len(self):
            raise IndexError(f"quantizer index {index} out of range for {len(self)} quantizers")
        column, block = divmod(index % len(self), self.n_block)
        return QuantizerView(column, block, self.scale[column, block], self.zero_point[column, block],
                             self.min_val[column, block], self.max_val[column, block])

    def extra_repr(self) -> str:
        return f"C={self.n_columns}, B={self.n_block}, bits={self.bits}, kind={self.kind!r}"

    # ----------------------------------------------------------------------------- helpers
    def _groups(self, x: Tensor) -> list[_BlockGroup]:
        if x.ndim != 2 or x.shape[1] != self.n_columns:
            raise ValueError(f"expected shape [L, {self.n_columns}], got {tuple(x.shape)}")
        return _block_groups(x.shape[0], self.n_block)

    def _require_initialized(self) -> None:
        if not bool(self.initialized):
            raise RuntimeError("BlockQuantizer: run calibrate() or a training forward first")

    def _block_reduce(self, reduce: Callable[[Tensor], Tensor], x: Tensor,
                      groups: list[_BlockGroup]) -> Tensor:
        """Per (column, block) reduction over rows: [L, C] -> (C, B); empty blocks give 0."""
        out = x.new_zeros((self.n_block, self.n_columns))
        for g in groups:
            xv = x[g.row_start:g.row_end].reshape(g.last - g.first, g.size, self.n_columns)
            out[g.first:g.last] = reduce(xv)
        return out.t().to(self.min_val.dtype)

    def _block_numel(self, length: int) -> Tensor:
        sizes = torch.tensor(split_length(length, self.n_block), dtype=self.scale.dtype)
        return sizes.to(self.scale.device).expand(self.n_columns, self.n_block)

    @torch.no_grad()
    def _observe(self, ac: Tensor, groups: list[_BlockGroup]) -> None:
        """Grow the vanilla ranges to this data (or initialize the LSQ step from it)."""
        x = ac.detach()
        if self.kind == "vanilla":
            # The state starts at 0 and the range always contains 0, so min(min, block, 0)
            # needs no "first call" branch; an empty block reports 0 (neutral).
            block_min = self._block_reduce(lambda v: v.amin(1), x, groups)
            block_max = self._block_reduce(lambda v: v.amax(1), x, groups)
            self.min_val.copy_(torch.minimum(self.min_val, block_min).clamp_max(0.0))
            self.max_val.copy_(torch.maximum(self.max_val, block_max).clamp_min(0.0))
            scale, zero_point = _vanilla_scale_zero_point(self.min_val, self.max_val, self.bits)
            self.scale.copy_(scale)
            self.zero_point.copy_(zero_point)
        else:
            abs_mean = self._block_reduce(lambda v: v.abs().mean(1), x, groups)
            self.step.copy_(2 * abs_mean / (2 ** (self.bits - 1) - 1) ** 0.5)
            self._sync_lsq_state()
        self.initialized.fill_(True)

    @torch.no_grad()
    def _sync_lsq_state(self) -> None:
        half = float(2 ** (self.bits - 1))
        step = self.step.detach().abs()
        self.scale.copy_(step)
        self.zero_point.fill_(half)
        self.min_val.copy_(-half * step)
        self.max_val.copy_((half - 1) * step)

    def _lsq(self, ac: Tensor, groups: list[_BlockGroup]) -> Tensor:
        q_neg, q_pos = 2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1
        grad_scale = torch.rsqrt(self._block_numel(ac.shape[0]).clamp_min(1) * q_pos)
        step = self.step.abs().clamp_min(torch.finfo(self.step.dtype).tiny)
        step = (step * grad_scale + (step - step * grad_scale).detach()).to(ac.dtype)
        return _blockwise(lambda xv, s: _round_ste(torch.clamp(xv / s, -q_neg, q_pos)) * s,
                          groups, ac, step)

    # ----------------------------------------------------------------------------- public
    @torch.no_grad()
    def calibrate(self, ac: Tensor) -> None:
        """Set the ranges (vanilla) or the step (LSQ) from ``ac`` [L, C] once, from scratch."""
        groups = self._groups(ac)
        self.min_val.zero_()
        self.max_val.zero_()
        self._observe(ac, groups)

    def forward(self, ac: Tensor) -> Tensor:
        """Fake-quantize AC coefficients.

        Args:
            ac: [L, C] AC coefficients (slots 1..N-1 of each column).

        Returns:
            [L, C] x_hat (same dtype). Vanilla: straight-through (identity) gradient; training
            mode first grows the ranges. LSQ: LSQ gradients for x and ``step``; the first
            training call initializes the step. Evaluation mode never moves the state.

        Raises:
            RuntimeError: evaluation before any calibration.
        """
        groups = self._groups(ac)
        ac = ac.contiguous()
        if self.kind == "vanilla":
            if self.training:
                self._observe(ac, groups)
            else:
                self._require_initialized()
            return _VanillaFakeQuant.apply(ac, self.scale.to(ac.dtype), self.zero_point.to(ac.dtype),
                                           self.bits, groups, 0)
        if not bool(self.initialized):
            if not self.training:
                self._require_initialized()
            self._observe(ac, groups)
        x_hat = self._lsq(ac, groups)
        if self.training:
            self._sync_lsq_state()
        return x_hat

    def forward_coeffs(self, coeffs: Tensor) -> Tensor:
        """``forward`` on the AC rows of full RAHT coefficients; the DC row passes through.

        Args:
            coeffs: [N, C] RAHT output (row 0 = DC, rows 1..N-1 = AC).

        Returns:
            [N, C] with row 0 unchanged and rows 1.. fake-quantized (same state updates as
            ``forward(coeffs[1:])``, without the slice/concatenate copies for vanilla).
        """
        if coeffs.ndim != 2 or coeffs.shape[0] < 1:
            raise ValueError(f"coeffs: expected shape [N, {self.n_columns}], got {tuple(coeffs.shape)}")
        if self.kind == "lsq":
            return torch.cat([coeffs[:1], self(coeffs[1:])])
        coeffs = coeffs.contiguous()
        groups = self._groups(coeffs[1:])
        if self.training:
            self._observe(coeffs[1:], groups)
        else:
            self._require_initialized()
        return _VanillaFakeQuant.apply(coeffs, self.scale.to(coeffs.dtype),
                                       self.zero_point.to(coeffs.dtype), self.bits, groups, 1)

    @torch.no_grad()
    def quantize(self, ac: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Integer codes with the current state (never moves it).

        Args:
            ac: [L, C] AC coefficients.

        Returns:
            codes [L, C] (``torch_code_dtype(bits)``), scale [C, B], zero_point [C, B] (float32).

        Raises:
            RuntimeError: the quantizer was never calibrated.
        """
        groups = self._groups(ac)
        self._require_initialized()
        if self.kind == "lsq":
            self._sync_lsq_state()
        dtype = _compute_dtype(self.bits, self.scale.dtype)
        codes = _blockwise(lambda xv, s, z: _codes(xv, _safe_scale(s), z, self.bits), groups,
                           ac.contiguous().to(dtype), self.scale.to(dtype), self.zero_point.to(dtype))
        return codes.to(torch_code_dtype(self.bits)), self.scale.clone(), self.zero_point.clone()

    @staticmethod
    def dequantize(codes: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        """Codes [L, C] with scale, zero_point [C, B] -> x_hat [L, C] (scale's dtype).

        Needs no quantizer state (the decoder calls it on the stored ranges).
        """
        if codes.ndim != 2 or scale.ndim != 2 or scale.shape[0] != codes.shape[1] \
                or zero_point.shape != scale.shape:
            raise ValueError(f"codes [L, C], scale and zero_point [C, B]: got "
                             f"{tuple(codes.shape)}, {tuple(scale.shape)}, "
                             f"{tuple(zero_point.shape)}")
        groups = _block_groups(codes.shape[0], scale.shape[1])
        return _blockwise(dequantize, groups, codes.contiguous(), scale, zero_point)


class _WholeTensorQuantizer(BlockQuantizer):
    """One quantizer (C = B = 1) over a whole tensor of any shape; state buffers (1, 1)."""

    KIND: str

    def __init__(self, bit: int = 8) -> None:
        super().__init__(1, 1, bits=bit, kind=self.KIND)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, 1)).reshape(x.shape)


class VanillaQuan(_WholeTensorQuantizer):
    """One min-max quantizer over a whole tensor; kept on purpose as the seed's documented
    ``VanillaQuan(bit)`` (../shared/seed/README.md)."""

    KIND = "vanilla"


class LsqQuan(_WholeTensorQuantizer):
    """One learned-step quantizer over a whole tensor (step initialized on first use); kept on
    purpose as the seed's documented ``LsqQuan(bit)`` (../shared/seed/README.md)."""

    KIND = "lsq"
