"""Entropy coding (compression/entropy.py): exact round trips on real data, rates against the
empirical entropy, determinism, and refusal of damaged streams."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from compression.entropy import (MAX_ALPHABET, EntropyError, Model, StreamReader, StreamWriter,
                                 decode_symbols, encode_symbols, put_varint)
from compression.octree import voxelize
from compression.raht import build_raht
from scene.ply import read_ply
from utils.image_utils import load_image


def _entropy_bits(symbols: np.ndarray) -> float:
    """n·H of the empirical distribution: no static model codes the array in fewer bits."""
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


@pytest.fixture(scope="module")
def image_codes(sample_scene) -> np.ndarray:
    """8-bit green values of a bundled real render's object pixels: a skewed 256-symbol source."""
    image = load_image(sorted((sample_scene / "train").glob("*.png"))[0]).numpy()
    return np.rint(image[1][image[3] > 0] * 255).astype(np.int64)


@pytest.fixture(scope="module")
def raht_codes(shared_data) -> np.ndarray:
    """Quantized RAHT AC coefficients of a real model's f_dc red column (Laplace-like)."""
    gaussians = read_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")
    codes, _ = voxelize(torch.from_numpy(gaussians["xyz"]).double(), 12)
    codes, first = np.unique(codes.numpy(), axis=0, return_index=True)
    plan = build_raht(codes, 12)
    coefficients = plan.forward(torch.from_numpy(gaussians["f_dc"][first, 0, :1]).double())
    return np.rint(coefficients[1:, 0].numpy() / 0.05).astype(np.int64)


@pytest.mark.parametrize("model", [None, Model.CATEGORICAL, Model.LAPLACE])
def test_round_trip_real_pixels(image_codes, model):
    data = encode_symbols(image_codes, model)
    np.testing.assert_array_equal(decode_symbols(data, image_codes.size), image_codes)


@pytest.mark.parametrize("model", [None, Model.CATEGORICAL, Model.LAPLACE])
def test_round_trip_real_raht_coefficients(raht_codes, model):
    data = encode_symbols(raht_codes, model)
    np.testing.assert_array_equal(decode_symbols(data, raht_codes.size), raht_codes)


def test_histogram_rate_close_to_empirical_entropy(image_codes, raht_codes):
    for symbols in (image_codes, raht_codes):
        bits = 8 * len(encode_symbols(symbols, Model.CATEGORICAL))
        entropy = _entropy_bits(symbols)
        # the histogram (quarter-octave levels) and the stream's words cost a few hundred bits
        assert entropy <= bits <= 1.01 * entropy + 1200, (bits, entropy)


def test_laplace_rate_on_laplace_source_and_auto_picks_cheaper(raht_codes):
    rng = np.random.default_rng(3)
    # a discretized Laplace source: the one-parameter model codes it at its entropy
    source = np.rint(rng.laplace(0.0, 4.0, 200_000)).astype(np.int64)
    bits = 8 * len(encode_symbols(source, Model.LAPLACE))
    assert _entropy_bits(source) <= bits <= 1.005 * _entropy_bits(source) + 200
    for symbols in (source, raht_codes):
        auto = len(encode_symbols(symbols))
        assert auto <= min(len(encode_symbols(symbols, Model.CATEGORICAL)),
                           len(encode_symbols(symbols, Model.LAPLACE))) + 4


def test_iid_symbols_cost_their_entropy():
    rng = np.random.default_rng(0)
    probabilities = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])  # entropy 1.875 bits
    symbols = rng.choice(5, size=400_000, p=probabilities) - 2
    bits_per_symbol = 8 * len(encode_symbols(symbols, Model.CATEGORICAL)) / symbols.size
    assert abs(bits_per_symbol - 1.875) < 0.01


def test_constant_and_small_segments():
    for symbols in (np.full(10_000, -7), np.array([5]), np.array([0, 1]), np.zeros(0, np.int64)):
        data = encode_symbols(symbols)
        np.testing.assert_array_equal(decode_symbols(data, 10_000), symbols)
    # count (2 bytes), side length, tag, lo: no payload
    assert len(encode_symbols(np.full(10_000, -7))) == 5


def test_multi_segment_stream(image_codes, raht_codes):
    writer = StreamWriter()
    segments = [image_codes, raht_codes, np.full(33, 2), image_codes[:100] - 300, raht_codes[:1]]
    models = [writer.write(s, m) for s, m in zip(segments, [None, Model.LAPLACE, None,
                                                             Model.CATEGORICAL, None])]
    assert models[2] == Model.CONSTANT and models[3] == Model.CATEGORICAL
    reader = StreamReader(writer.to_bytes())
    for segment in segments:
        np.testing.assert_array_equal(reader.read(segment.size), segment)
    reader.close()


def test_deterministic_and_pinned(raht_codes, image_codes):
    assert encode_symbols(raht_codes) == encode_symbols(raht_codes.copy())
    # the format (level quantization, model tables, constriction's coder) is pinned by bytes
    digest = hashlib.sha256(encode_symbols(image_codes[:5000], Model.CATEGORICAL)
                            + encode_symbols(image_codes[:5000] - 128, Model.LAPLACE)).hexdigest()
    assert digest == "16a6b1dbe5a9e20eaa452700d379ec7e981833ef03e0abd7b888fe18f24c8a10"


def test_declared_count_is_checked_before_allocation():
    data = encode_symbols(np.arange(100) % 7)
    with pytest.raises(EntropyError):
        decode_symbols(data, 99)
    huge = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) + data[1:]  # declares 2^35 - 1 symbols
    with pytest.raises(EntropyError):
        decode_symbols(huge, 1 << 20)


def test_damaged_streams_refused_or_well_formed(raht_codes):
    """Truncation, padding and bit flips: EntropyError, or an array of the requested shape."""
    symbols = raht_codes[:3000]
    data = encode_symbols(symbols)
    refused = 0
    for cut in range(len(data)):
        try:
            out = decode_symbols(data[:cut], symbols.size)
        except EntropyError:
            refused += 1
        else:
            assert out.shape == symbols.shape
    assert refused >= 0.9 * len(data)  # all of the header, most of the payload
    with pytest.raises(EntropyError):
        decode_symbols(data + b"\x00\x00\x00", symbols.size)  # not whole words
    rng = np.random.default_rng(1)
    for _ in range(300):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 4)):
            damaged[position] ^= 1 << int(rng.integers(8))
        try:
            out = decode_symbols(bytes(damaged), symbols.size)
        except EntropyError:
            continue
        assert out.shape == symbols.shape and out.dtype == np.int64


def test_side_information_checked():
    writer = StreamWriter()
    writer.write(np.array([0, 1, 2, 2, 1]), Model.LAPLACE)
    data = writer.to_bytes()
    reader = StreamReader(data)
    reader.read(5)
    with pytest.raises(EntropyError):
        reader.read(5)  # no second segment
    reader = StreamReader(data)
    with pytest.raises(EntropyError):
        reader.close()  # segment left unread


def test_invalid_arguments():
    with pytest.raises(ValueError):
        encode_symbols(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError):
        encode_symbols(np.array([0.5, 1.0]))
    with pytest.raises(ValueError):
        encode_symbols(np.array([0, MAX_ALPHABET]))
    with pytest.raises(ValueError):
        StreamReader(encode_symbols(np.arange(3))[1:]).read(-1)


def test_laplace_tables_far_from_zero_are_never_built():
    """A zero-mean Laplace table runs from 0 to the segment's largest |symbol|: segments far
    from zero take the histogram when writing and are refused when reading, so a crafted
    stream cannot make the reader allocate a table of 2^30 entries."""
    far = (1 << 29) + np.arange(60) % 3
    np.testing.assert_array_equal(decode_symbols(encode_symbols(far), far.size), far)
    with pytest.raises(ValueError, match="Laplace"):
        encode_symbols(far, Model.LAPLACE)
    side = bytearray([Model.LAPLACE])
    put_varint(side, 2 * (1 << 29))  # zigzag of lo = 2^29
    put_varint(side, 2)  # hi - lo
    side += (40000).to_bytes(2, "little")  # m
    stream = bytearray()
    put_varint(stream, 10)  # count
    put_varint(stream, len(side))
    stream += side + bytes(4)
    with pytest.raises(EntropyError, match="alphabet limit"):
        decode_symbols(bytes(stream), 10)
