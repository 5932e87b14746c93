"""Seeded damage of real compact bitstreams, shared by the Python reader's fuzz test
(test_compact.py) and the JavaScript reader's (test_web_decoder.py)."""
from __future__ import annotations

import struct
import zlib

import numpy as np

HEADER_BYTES = 4 + 4 + 8 + 1  # magic, version / SH degree / depth / quality, N, K, exponent
FUZZ_CASES = 240


def mutations(data: bytes, other: bytes, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Seeded random damage of a real file: truncation, bit flips, a chunk spliced in from
    another real file, padding; each also with its CRC recomputed, so that the parser's own
    checks (not only the CRC) meet the damage."""
    cases = []
    for _ in range(FUZZ_CASES // 8):
        cut = int(rng.integers(0, len(data)))
        flipped = bytearray(data)
        for position in rng.integers(0, len(data), int(rng.integers(1, 9))):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        start, length = int(rng.integers(0, len(data))), int(rng.integers(1, 64))
        source = int(rng.integers(0, len(other) - length))
        spliced = data[:start] + other[source:source + length] + data[start + length:]
        padded = data + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        for name, damaged in (("truncated", data[:cut]), ("flipped", bytes(flipped)),
                              ("spliced", spliced), ("padded", padded)):
            cases.append((name, damaged))
            body = damaged[:-4] if len(damaged) > HEADER_BYTES + 4 else damaged
            cases.append((f"{name}+crc", body + struct.pack("<I", zlib.crc32(body))))
    return cases
