"""Entropy coding of integer arrays with static models, over ``constriction``'s range coder.

A stream is ``varint(len(side)) + side + payload``: *side* holds the small per-segment model
parameters as bytes (varints, fixed-width integers), *payload* is one range-coded sequence of
little-endian uint32 words shared by every segment. ``StreamWriter`` appends segments (one
integer array each, with its own model) and ``StreamReader`` reads them back in the same order;
the caller supplies each segment's length, so nothing is allocated from a count read from the
stream. ``encode_symbols`` / ``decode_symbols`` wrap one self-describing segment.

Models (each segment starts with a one-byte tag in *side*; see ``Model``):
- ``CATEGORICAL``: a static histogram. Side: zigzag varint ``lo``, varint ``hi - lo``. The
  counts are coded in the payload as levels ``q = 1 + round(4·log2(count))`` (``q = 0``: the
  symbol is absent), quarter-octave steps that cost < 0.01 bit per symbol; the levels are coded
  as differences from the previous level with a fixed two-sided geometric model.
- ``LAPLACE``: a discretized zero-mean Laplace, P(0) = 1 - m, P(k) = ½ m^(2|k|-1)(1 - m²)
  with m = e^(-1/(2b)) stored as a uint16 (m = code / 65536), renormalized over [lo, hi].
- ``CONSTANT``: every symbol equals ``lo`` (no payload).

Every probability table is built from exactly representable float64 values (powers of two
times fixed constants, products of a stored uint16 fraction), so encoder and decoder build
bit-identical models on any IEEE-754 machine. ``constriction`` does the arithmetic coding (no
per-symbol Python loop). Damaged or inconsistent input raises ``EntropyError``.
"""
from __future__ import annotations

import enum

import constriction
import numpy as np

__all__ = ["ByteReader", "EntropyError", "MAX_ALPHABET", "MAX_COUNT", "Model", "StreamReader",
           "StreamWriter", "categorical_cost_bits", "decode_symbols", "encode_symbols", "put_varint",
           "quarter_powers"]

MAX_ALPHABET = 1 << 20  # a segment's symbols span at most this many consecutive values
MAX_COUNT = (1 << 31) - 1  # symbols per segment
SYMBOL_LIMIT = 1 << 30  # |symbol| bound (constriction codes int32)
_LEVELS_PER_OCTAVE = 4
_MAX_LEVEL = 1 + _LEVELS_PER_OCTAVE * 31  # count < 2^31
# 2^(j/4), j = 0..3, as exact float64 literals: level q >= 1 stands for 2^((q-1)/4)
_QUARTER_POWERS = np.array([float.fromhex("0x1.0000000000000p+0"),
                            float.fromhex("0x1.306fe0a31b715p+0"),
                            float.fromhex("0x1.6a09e667f3bcdp+0"),
                            float.fromhex("0x1.ae89f995ad3adp+0")])
_M_SCALE = 1 << 16  # Laplace parameter m = code / 2^16, code in [1, 2^16 - 1]
_LEVEL_DELTA_M_CODE = 49152  # m = 0.75 for the differences of histogram levels


class EntropyError(ValueError):
    """An entropy-coded stream is damaged, truncated or inconsistent with what the caller expects."""


class Model(enum.IntEnum):
    """Segment model tags (first side byte of every segment)."""

    CONSTANT = 0
    CATEGORICAL = 1
    LAPLACE = 2


# ----------------------------------------------------------------------------- side info

def put_varint(out: bytearray, value: int) -> None:
    """Append an unsigned LEB128 varint."""
    if value < 0:  # a caller's bug, not damaged input
        raise ValueError(f"varint: expected a non-negative integer, got {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


class ByteReader:
    """Sequential reader of side bytes (varints, fixed-width integers); every read is
    bounds-checked and raises ``EntropyError`` on truncation or an out-of-limit value."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def varint(self, limit: int) -> int:
        """One unsigned varint, refused above ``limit``."""
        value, shift = 0, 0
        while True:
            if self._pos >= len(self._data):
                raise EntropyError("truncated side information")
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            if value > limit:
                raise EntropyError(f"side value {value} above its limit {limit}")
            if not byte & 0x80:
                if byte == 0 and shift > 0:
                    raise EntropyError("non-canonical varint in side information")
                return value
            shift += 7

    def uint(self, size: int) -> int:
        """One little-endian unsigned integer of ``size`` bytes."""
        if self._pos + size > len(self._data):
            raise EntropyError("truncated side information")
        value = int.from_bytes(self._data[self._pos:self._pos + size], "little")
        self._pos += size
        return value

    @property
    def position(self) -> int:
        """Bytes read so far."""
        return self._pos

    @property
    def exhausted(self) -> bool:
        return self._pos == len(self._data)


# ----------------------------------------------------------------------------- models

def _levels_from_counts(counts: np.ndarray) -> np.ndarray:
    """Histogram counts -> levels q (0 = absent, else 1 + round(4·log2(count)))."""
    levels = np.zeros(counts.shape, dtype=np.int64)
    present = counts > 0
    levels[present] = 1 + np.rint(_LEVELS_PER_OCTAVE * np.log2(counts[present])).astype(np.int64)
    return levels


def quarter_powers(exponents: np.ndarray) -> np.ndarray:
    """2^(e/4) as float64 for integer exponents e (any sign), the same bits on any IEEE machine
    (a power of two times one of four exact constants; no ``pow``)."""
    e = np.asarray(exponents, dtype=np.int64)
    return np.ldexp(_QUARTER_POWERS[e % _LEVELS_PER_OCTAVE], e // _LEVELS_PER_OCTAVE)


def _probabilities_from_levels(levels: np.ndarray) -> np.ndarray:
    """Levels -> unnormalized float64 probabilities 2^((q-1)/4), exact on any IEEE machine."""
    return np.where(levels > 0, quarter_powers(np.maximum(levels - 1, 0)), 0.0)


def _laplace_fits(lo: int, hi: int) -> bool:
    """Whether a zero-mean Laplace table over [lo, hi] stays small: its size is max(|lo|, |hi|)
    + 1 (the table runs from 0), so both ends must lie within the alphabet limit."""
    return max(abs(lo), abs(hi)) < MAX_ALPHABET


def _laplace_probabilities(m_code: int, lo: int, hi: int) -> np.ndarray:
    """Discretized Laplace over [lo, hi] (unnormalized float64), from m = m_code / 2^16.

    P(0) = 1 - m, P(k) = ½·m^(2|k|-1)·(1 - m²): powers by sequential products (deterministic).
    The caller checks :func:`_laplace_fits` first (the table is sized by the larger |end|).
    """
    m = m_code / _M_SCALE
    top = max(abs(lo), abs(hi))
    by_magnitude = np.empty(top + 1)
    by_magnitude[0] = 1.0 - m
    if top > 0:
        powers = np.cumprod(np.full(top, m * m))  # m^(2k), k = 1..top
        by_magnitude[1:] = 0.5 * (1.0 - m * m) / m * powers
    return by_magnitude[np.abs(np.arange(lo, hi + 1))]


def _laplace_m_code(symbols: np.ndarray) -> int:
    """Moment fit of m: E|k| = m / (1 - m²), quantized to a uint16 fraction."""
    mean_abs = float(np.mean(np.abs(symbols)))
    m = (np.sqrt(1.0 + 4.0 * mean_abs ** 2) - 1.0) / (2.0 * mean_abs) if mean_abs > 0 else 0.0
    return int(np.clip(np.rint(m * _M_SCALE), 1, _M_SCALE - 1))


def _categorical(probabilities: np.ndarray) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(probabilities, perfect=False)


_LEVEL_DELTA_PROBABILITIES = _laplace_probabilities(_LEVEL_DELTA_M_CODE, -_MAX_LEVEL, _MAX_LEVEL)
_LEVEL_DELTA_MODEL = _categorical(_LEVEL_DELTA_PROBABILITIES)


def _cost_bits(counts: np.ndarray, probabilities: np.ndarray) -> float:
    """Ideal code length of a histogram under (unnormalized) probabilities, in bits."""
    p = probabilities / probabilities.sum()
    used = counts > 0
    with np.errstate(divide="ignore"):
        return float(-(counts[used] * np.log2(np.maximum(p[used], 2.0 ** -24))).sum())


def _level_table_bits(levels: np.ndarray) -> float:
    """Ideal cost of a histogram's levels, coded as differences under the fixed model."""
    deltas = np.diff(levels, prepend=0) + _MAX_LEVEL
    return _cost_bits(np.bincount(deltas, minlength=2 * _MAX_LEVEL + 1), _LEVEL_DELTA_PROBABILITIES)


def categorical_cost_bits(counts: np.ndarray) -> float:
    """Estimated size in bits of a CATEGORICAL segment with this histogram (symbols lo..hi).

    Ideal code length of the symbols under the quantized histogram plus its levels; the side
    bytes (tag, lo, span: about 3 bytes) are included as 24 bits.
    """
    counts = np.asarray(counts, dtype=np.int64)
    levels = _levels_from_counts(counts)
    return 24.0 + _level_table_bits(levels) + _cost_bits(counts, _probabilities_from_levels(levels))


# ----------------------------------------------------------------------------- streams

def _check_symbols(symbols: np.ndarray) -> np.ndarray:
    array = np.asarray(symbols)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"symbols: expected a 1-D integer array, got {array.dtype} {array.shape}")
    if array.size > MAX_COUNT:
        raise ValueError(f"symbols: at most {MAX_COUNT} per segment, got {array.size}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < -SYMBOL_LIMIT or array.max() > SYMBOL_LIMIT):
        raise ValueError(f"symbols: values must lie in [-2^30, 2^30]")
    if array.size and array.max() - array.min() >= MAX_ALPHABET:
        raise ValueError(f"symbols: span {array.max() - array.min() + 1} exceeds {MAX_ALPHABET}")
    return array


class StreamWriter:
    """Accumulates segments, each an integer array with its own static model.

    ``write(symbols, model=None)`` picks the cheaper of CATEGORICAL and LAPLACE when ``model``
    is None (by the ideal code length including the histogram's cost). ``to_bytes()`` seals the
    stream; a writer is single-use.
    """

    def __init__(self) -> None:
        self._side = bytearray()
        self._encoder = constriction.stream.queue.RangeEncoder()
        self._sealed = False

    def write(self, symbols: np.ndarray, model: Model | None = None) -> Model:
        """Append one segment; returns the model used. Empty segments write nothing."""
        if self._sealed:
            raise RuntimeError("StreamWriter: already sealed by to_bytes()")
        array = _check_symbols(symbols)
        if array.size == 0:
            return Model.CONSTANT
        lo, hi = int(array.min()), int(array.max())
        if lo == hi:
            model = Model.CONSTANT
        offsets = (array - lo).astype(np.int32)
        counts = np.bincount(offsets, minlength=hi - lo + 1)
        if model == Model.LAPLACE and not _laplace_fits(lo, hi):
            raise ValueError(f"symbols: a Laplace segment needs |symbol| < {MAX_ALPHABET}, "
                             f"got [{lo}, {hi}]")
        if model is None:
            categorical_bits = categorical_cost_bits(counts)
            laplace_bits = (40.0 + _cost_bits(counts, _laplace_probabilities(
                _laplace_m_code(array), lo, hi)) if _laplace_fits(lo, hi) else np.inf)
            model = Model.CATEGORICAL if categorical_bits < laplace_bits else Model.LAPLACE
        self._side.append(int(model))
        put_varint(self._side, _zigzag(lo))
        if model == Model.CONSTANT:
            return model
        put_varint(self._side, hi - lo)
        if model == Model.CATEGORICAL:
            levels = _levels_from_counts(counts)
            deltas = np.diff(levels, prepend=0).astype(np.int32) + _MAX_LEVEL
            self._encoder.encode(deltas, _LEVEL_DELTA_MODEL)
            probabilities = _probabilities_from_levels(levels)
        elif model == Model.LAPLACE:
            m_code = _laplace_m_code(array)
            self._side += m_code.to_bytes(2, "little")
            probabilities = _laplace_probabilities(m_code, lo, hi)
        else:
            raise ValueError(f"model: expected one of {list(Model)}, got {model!r}")
        self._encoder.encode(offsets, _categorical(probabilities))
        return model

    def to_bytes(self) -> bytes:
        """The sealed stream: varint(len(side)) + side + payload (little-endian uint32 words)."""
        self._sealed = True
        out = bytearray()
        put_varint(out, len(self._side))
        out += self._side
        out += self._encoder.get_compressed().astype("<u4").tobytes()
        return bytes(out)


class StreamReader:
    """Reads the segments of a ``StreamWriter`` stream back, in order.

    ``read(count)`` returns the next segment as int64 (the caller knows each segment's length
    and bounds it); ``close()`` checks that nothing is left over. Raises ``EntropyError`` on
    damaged input.
    """

    def __init__(self, data: bytes) -> None:
        header = ByteReader(bytes(data))
        side_size = header.varint(len(data))
        start = header.position
        if start + side_size > len(data):
            raise EntropyError("truncated side information")
        payload = bytes(data[start + side_size:])
        if len(payload) % 4:
            raise EntropyError(f"payload of {len(payload)} bytes is not whole 32-bit words")
        self._side = ByteReader(bytes(data[start:start + side_size]))
        self._decoder = constriction.stream.queue.RangeDecoder(
            np.frombuffer(payload, dtype="<u4").astype(np.uint32))

    def _decode(self, model: constriction.stream.model.Categorical, count: int) -> np.ndarray:
        try:
            return self._decoder.decode(model, count)
        # constriction reports invalid data as AssertionError / ValueError (undocumented types)
        except (AssertionError, ValueError, RuntimeError, OverflowError) as error:
            raise EntropyError(f"invalid range-coded payload ({error})") from None

    def read(self, count: int) -> np.ndarray:
        """The next segment of ``count`` symbols (int64)."""
        if not 0 <= count <= MAX_COUNT:
            raise ValueError(f"count: expected an integer in [0, {MAX_COUNT}], got {count}")
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        tag = self._side.uint(1)
        if tag not in Model._value2member_map_:
            raise EntropyError(f"unknown segment model {tag}")
        lo = _unzigzag(self._side.varint(2 * SYMBOL_LIMIT))
        if tag == Model.CONSTANT:
            return np.full(count, lo, dtype=np.int64)
        span = self._side.varint(MAX_ALPHABET - 1)
        hi = lo + span
        if span == 0 or hi > SYMBOL_LIMIT:
            raise EntropyError(f"invalid symbol range [{lo}, {hi}]")
        if tag == Model.CATEGORICAL:
            levels = np.cumsum(self._decode(_LEVEL_DELTA_MODEL, span + 1).astype(np.int64) - _MAX_LEVEL)
            if levels.min() < 0 or levels.max() > _MAX_LEVEL or levels.max() == 0:
                raise EntropyError("invalid histogram levels")
            probabilities = _probabilities_from_levels(levels)
        else:
            m_code = self._side.uint(2)
            if not 1 <= m_code < _M_SCALE:
                raise EntropyError(f"invalid Laplace parameter {m_code}")
            if not _laplace_fits(lo, hi):
                raise EntropyError(f"Laplace segment over [{lo}, {hi}] beyond the alphabet limit")
            probabilities = _laplace_probabilities(m_code, lo, hi)
        return self._decode(_categorical(probabilities), count).astype(np.int64) + lo

    def close(self) -> None:
        """Refuse leftover side bytes or payload that definitely holds more symbols."""
        if not self._side.exhausted:
            raise EntropyError("unread side information after the last segment")
        if not self._decoder.maybe_exhausted():
            raise EntropyError("unread payload after the last segment")


def encode_symbols(symbols: np.ndarray, model: Model | None = None) -> bytes:
    """One self-describing stream: varint(count) then a single segment (see ``StreamWriter``)."""
    array = _check_symbols(symbols)
    writer = StreamWriter()
    writer.write(array, model)
    out = bytearray()
    put_varint(out, array.size)
    return bytes(out) + writer.to_bytes()


def decode_symbols(data: bytes, max_count: int) -> np.ndarray:
    """Inverse of ``encode_symbols``; refuses a stored count above ``max_count``."""
    head = ByteReader(bytes(data))
    count = head.varint(min(max_count, MAX_COUNT))
    reader = StreamReader(bytes(data)[head.position:])
    symbols = reader.read(count)
    reader.close()
    return symbols
