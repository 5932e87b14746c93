"""The compact container (``--layout compact``): one file, ``bitstream.gsc``, and its strict reader
(the format of ``compact_codec.CompactCodec``).

Byte layout (all integers little-endian; docs/COMPACT_FORMAT.md is the full specification)::

    magic "GSCF" | version u8 | SH degree u8 | depth D u8 | quality u8 | N u32 | K u32
    | codebook step exponent i8 | bbox 6 × f64 | DC C × f32 | up 3 × f32 (version 3)
    | u32 length + geometry stream     (octree occupancy, ``octree_coding``)
    | u32 length + attribute stream    (``entropy`` segments: step exponents, AC codes per
    |                                   (column, run of RAHT levels), VQ indices, codebook
    |                                   codes)
    | CRC32 of every byte before it (u32)

The writer writes version 3; the reader reads versions 2 and 3 (version 2 has no up vector).
C = 10 RAHT columns (opacity, Euler roll/pitch/yaw, f_dc RGB, log-scales xyz), F = 3·((d+1)²−1)
f_rest values per codebook row (K = 0 when d = 0). The RAHT levels, and how many AC codes each
holds, follow from the decoded geometry, so no count beyond N and K is stored.

Reading trusts nothing: the file size is bounded before it is read; the magic, version and
CRC are checked first; every count is checked against hard limits (:data:`MAX_GAUSSIANS`,
:data:`MAX_CODEBOOK`) and against the file size (at least one bit per Gaussian) before anything
is allocated from it; the octree decoder allocates at most 8·N nodes per level; the entropy
decoder reads exactly the counts the geometry implies. Every problem is one
:class:`CompactFormatError` (a ValueError) naming the file.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from compression.entropy import EntropyError, StreamReader, StreamWriter
from compression.codec import GROUPS, Container, Layout
from compression.octree import MAX_DEPTH
from compression.octree_coding import decode_octree, encode_octree
from compression.raht import RahtPlan, build_raht
from compression.step_quantization import EXPONENT_LIMIT, MAX_CODE, LevelQuantizer, step_values
from utils.output_paths import COMPACT_FILE
from utils.system_utils import atomic_path

__all__ = ["COMPACT", "COMPACT_MAGIC", "FORMAT_VERSION", "MAX_CODEBOOK", "MAX_FILE_BYTES",
           "MAX_GAUSSIANS", "READ_VERSIONS", "SEGMENT_SHARE", "CompactBitstream",
           "CompactFormatError", "camera_up", "is_compact_file", "parse_compact", "read_compact",
           "segment_sizes", "write_compact"]

COMPACT_MAGIC = b"GSCF"
#: the version the writer writes; 3 = 2 plus the scene's up vector
FORMAT_VERSION = 3
#: the versions the reader reads
READ_VERSIONS = (2, 3)
#: hard limits of a file this reader accepts
MAX_GAUSSIANS = 1 << 26
MAX_CODEBOOK = 1 << 16
MAX_FILE_BYTES = 1 << 32
_HEADER = struct.Struct("<4sBBBBIIb")
_LENGTH = struct.Struct("<I")
_BBOX_BYTES = 6 * 8
_UP_BYTES = 3 * 4
#: how far from unit length a stored up vector may be (it is a float32 unit vector)
_UP_NORM_TOLERANCE = 1e-3
_STREAMS = ("geometry", "attribute")
_CRC_BYTES = 4
#: a column's AC segments hold at least N / SEGMENT_SHARE codes each (:func:`segment_sizes`)
SEGMENT_SHARE = 4
#: the container: one file
COMPACT = Container(COMPACT_FILE, None)


class CompactFormatError(ValueError):
    """A compact bitstream that is corrupt, truncated or inconsistent; the message names it."""


def camera_up(cameras: Optional[Sequence]) -> Optional[np.ndarray]:
    """The scene's up direction from its cameras: the mean of their up vectors (−y of the
    OpenCV camera axes, in world coordinates, from each ``world_to_cam``), normalized, float32;
    None without cameras or when their up vectors cancel out. A viewer shows the scene upright
    with it (docs/COMPACT_FORMAT.md §1)."""
    if not cameras:
        return None
    rows = np.stack([np.asarray(camera.world_to_cam.detach().cpu().numpy()
                                if isinstance(camera.world_to_cam, torch.Tensor)
                                else camera.world_to_cam, dtype=np.float64)[1, :3]
                     for camera in cameras])
    mean = -rows.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if not np.isfinite(norm) or norm < 1e-6:
        return None
    return (mean / norm).astype(np.float32)


@dataclass
class CompactBitstream:
    """Everything a ``bitstream.gsc`` holds, decoded (N Gaussians, C columns, L RAHT levels).

    Attributes:
        layout: the layout record (not stored: the compact codec serves one layout).
        sh_degree: d (0..3).
        depth: D, octree bits per axis.
        quality: the ``--quality`` level it was written at (0: settings given explicitly).
        bbox: [6] float64 xmin, xmax, ymin, ymax, zmin, zmax.
        voxels: [N, 3] int64 voxel coordinates, ascending key x·2^(2D) + y·2^D + z.
        dc: [C] float32 RAHT DC coefficient per column.
        exponents: [C, L] int64 step exponents (step = 2^(e/4)).
        codes: [N - 1, C] int64 AC codes in RAHT slot order (row s - 1: slot s).
        vq_indices: [N] int64 codebook row per Gaussian (empty when K = 0).
        codebook_codes: [K, F] int64 codebook entries on the grid (codebook = codes · step).
        codebook_exponent: e of the codebook's grid step 2^(e/4) (0 when K = 0).
        plan: the RAHT plan of ``voxels`` (derived from the geometry, not stored).
        up: [3] float32 unit up vector of the scene (:func:`camera_up`), or None: unknown
            (written as zeros; a version-2 file has none).
    """

    layout: Layout
    sh_degree: int
    depth: int
    quality: int
    bbox: np.ndarray
    voxels: np.ndarray
    dc: np.ndarray
    exponents: np.ndarray
    codes: np.ndarray
    vq_indices: np.ndarray
    codebook_codes: np.ndarray
    codebook_exponent: int
    plan: RahtPlan
    up: Optional[np.ndarray] = None

    @property
    def num_gaussians(self) -> int:
        """N."""
        return int(self.voxels.shape[0])

    @property
    def codebook_size(self) -> int:
        """K."""
        return int(self.codebook_codes.shape[0])

    @property
    def codebook(self) -> np.ndarray:
        """[K, F] float32 codebook: codes · 2^(e/4), the values the finetune rendered."""
        return LevelQuantizer.dequantize(torch.from_numpy(self.codebook_codes),
                                         step_values([self.codebook_exponent])).numpy()

    def _attribute_segments(self) -> Iterator[tuple[str, np.ndarray]]:
        """The attribute stream's segments in file order (§5), each with the part it codes:
        ``exponents``, the RAHT group of its column (``opacity``, ``euler``, ``f_dc``,
        ``scaling``), ``vq_indices``, ``codebook``."""
        layout = self.layout
        names = [name for name in layout.raht
                 for _ in range(GROUPS[name].width(self.sh_degree))]
        for column in range(len(names)):
            yield "exponents", self.exponents[column]
        grouped = self.codes[self.plan.high_slots().numpy() - 1]  # AC rows level by level
        bounds = np.cumsum(segment_sizes(self.plan))[:-1]
        for column, name in enumerate(names):
            for segment in np.split(grouped[:, column], bounds):
                yield name, segment
        if self.codebook_size:
            yield "vq_indices", self.vq_indices
            yield "codebook", self.codebook_codes.reshape(-1)

    def part_bytes(self) -> dict[str, int]:
        """Where the bytes go: ``geometry`` (the octree stream) and each part of the attribute
        stream (:meth:`_attribute_segments`) coded as a stream of its own, so each figure
        carries its own stream overhead (a few bytes) and they sum to about the file's size
        less its fixed header."""
        writers: dict[str, StreamWriter] = {}
        for name, segment in self._attribute_segments():
            writers.setdefault(name, StreamWriter()).write(segment)
        return {"geometry": len(encode_octree(self.voxels, self.depth)),
                **{name: len(writer.to_bytes()) for name, writer in writers.items()}}

    def to_bytes(self) -> bytes:
        """The file's bytes (module docstring); the same content always gives the same bytes.

        Raises:
            ValueError: inconsistent content (shapes, ranges), or a model the reader would
                refuse (more Gaussians than :data:`MAX_GAUSSIANS`, below one bit each).
        """
        layout = self.layout
        n, k = self.num_gaussians, self.codebook_size
        columns = layout.width(layout.raht, self.sh_degree)
        rest = layout.width(layout.vq, self.sh_degree)
        n_levels = len(self.plan.levels)
        checks = [
            (0 <= self.sh_degree <= 3 and 1 <= self.depth <= MAX_DEPTH and 0 <= self.quality <= 9,
             "SH degree, depth or quality out of range"),
            (2 <= n <= MAX_GAUSSIANS and self.plan.n == n, f"N must be in [2, {MAX_GAUSSIANS}]"),
            (self.bbox.shape == (6,) and self.dc.shape == (columns,), "bbox or DC shape"),
            (self.exponents.shape == (columns, n_levels)
             and int(np.abs(self.exponents).max(initial=0)) <= EXPONENT_LIMIT,
             "step exponents"),
            (self.codes.shape == (n - 1, columns)
             and int(np.abs(self.codes).max(initial=0)) <= MAX_CODE, "AC codes"),
            (self.codebook_codes.shape == (k, rest) and (k == 0) == (rest == 0)
             and k <= min(n, MAX_CODEBOOK) and abs(self.codebook_exponent) <= EXPONENT_LIMIT
             and int(np.abs(self.codebook_codes).max(initial=0)) <= MAX_CODE, "codebook"),
            (self.vq_indices.shape == ((n,) if k else (0,))
             and bool(np.all((self.vq_indices >= 0) & (self.vq_indices < max(k, 1)))),
             "VQ indices"),
            (self.up is None or (np.shape(self.up) == (3,) and _valid_up(self.up)), "up vector"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"compact bitstream: inconsistent content ({what})")
        header = _HEADER.pack(COMPACT_MAGIC, FORMAT_VERSION, self.sh_degree, self.depth,
                              self.quality, n, k, self.codebook_exponent)
        header += self.bbox.astype("<f8").tobytes() + self.dc.astype("<f4").tobytes()
        header += (np.zeros(3) if self.up is None else np.asarray(self.up)).astype("<f4").tobytes()
        attributes = StreamWriter()
        for _, segment in self._attribute_segments():
            attributes.write(segment)
        streams = (encode_octree(self.voxels, self.depth), attributes.to_bytes())
        body = header + b"".join(_LENGTH.pack(len(s)) + s for s in streams)
        if n > 8 * (len(body) + _CRC_BYTES):
            raise ValueError(f"compact bitstream: {n} Gaussians in {len(body)} bytes is below "
                             f"one bit per Gaussian, which readers refuse")
        return body + _LENGTH.pack(zlib.crc32(body))


def _valid_up(up: np.ndarray) -> bool:
    """Finite and of unit length (as float32 stores it), or all zero."""
    up = np.asarray(up, dtype=np.float32).astype(np.float64)
    norm = float(np.linalg.norm(up))
    return bool(np.all(np.isfinite(up))) and (norm == 0 or abs(norm - 1) <= _UP_NORM_TOLERANCE)


def segment_sizes(plan: RahtPlan) -> list[int]:
    """How many AC codes each entropy segment of a column holds: consecutive RAHT levels (in
    plan order) joined until a segment holds at least N / :data:`SEGMENT_SHARE` codes, a short
    remainder joined to the last segment. A segment's model costs ~40 bits; measured on four
    models from 1.5k to 33k Gaussians, models for smaller groups of levels cost more than they
    save (−3.5 bits per input Gaussian on a 2k-Gaussian model against one segment per level)."""
    least = -(-plan.n // SEGMENT_SHARE)
    sizes: list[int] = []
    current = 0
    for level in plan.levels:
        current += level.num_pairs
        if current >= least:
            sizes.append(current)
            current = 0
    if current:
        if sizes:
            sizes[-1] += current
        else:
            sizes.append(current)
    return sizes


def is_compact_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that starts with the compact magic."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(COMPACT_MAGIC)) == COMPACT_MAGIC


def write_compact(bitstream: CompactBitstream, out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/bitstream.gsc`` atomically; returns its path."""
    data = bitstream.to_bytes()
    path = Path(out_dir) / COMPACT.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def read_compact(path: str | os.PathLike, layout: Layout) -> CompactBitstream:
    """Read and fully validate a ``bitstream.gsc`` of ``layout``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CompactFormatError: anything wrong with its content (module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such compact bitstream")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CompactFormatError(f"{path}: {size} bytes, above the {MAX_FILE_BYTES}-byte limit")
    try:
        return parse_compact(path.read_bytes(), layout)
    except (CompactFormatError, EntropyError) as exc:
        raise CompactFormatError(f"{path}: {exc}") from None


def parse_compact(data: bytes, layout: Layout) -> CompactBitstream:
    """The content of a compact file's bytes (a stream of ``layout``).

    Raises:
        CompactFormatError, EntropyError: damaged, truncated or inconsistent data.
    """
    fixed = _HEADER.size + _BBOX_BYTES
    if len(data) < fixed + len(_STREAMS) * _LENGTH.size + _CRC_BYTES:
        raise CompactFormatError(f"{len(data)} bytes, shorter than a compact bitstream's header")
    magic, version, sh_degree, depth, quality, n, k, cb_exponent = _HEADER.unpack_from(data)
    if magic != COMPACT_MAGIC:
        raise CompactFormatError(f"not a compact bitstream (magic {magic!r})")
    if version not in READ_VERSIONS:
        raise CompactFormatError(f"format version {version}; this reader reads versions "
                                 f"{' and '.join(map(str, READ_VERSIONS))}")
    (stored_crc,) = _LENGTH.unpack_from(data, len(data) - _CRC_BYTES)
    if zlib.crc32(data[:-_CRC_BYTES]) != stored_crc:
        raise CompactFormatError("CRC mismatch (the file is damaged or truncated)")
    columns = layout.width(layout.raht, min(sh_degree, 3))
    rest = layout.width(layout.vq, min(sh_degree, 3))
    problems = [
        (sh_degree <= 3, f"SH degree {sh_degree} above 3"),
        (1 <= depth <= MAX_DEPTH, f"depth {depth} outside [1, {MAX_DEPTH}]"),
        (quality <= 9, f"quality {quality} above 9"),
        (2 <= n <= MAX_GAUSSIANS, f"{n} Gaussians outside [2, {MAX_GAUSSIANS}]"),
        (n <= 8 * len(data), f"{n} Gaussians in {len(data)} bytes (below one bit each)"),
        ((k == 0) == (rest == 0) and k <= min(n, MAX_CODEBOOK),
         f"codebook of {k} rows for {n} Gaussians at SH degree {sh_degree}"),
        (abs(cb_exponent) <= EXPONENT_LIMIT and (k > 0 or cb_exponent == 0),
         f"codebook step exponent {cb_exponent}"),
    ]
    for ok, what in problems:
        if not ok:
            raise CompactFormatError(what)
    offset = _HEADER.size
    bbox = np.frombuffer(data, "<f8", 6, offset).astype(np.float64)
    offset += _BBOX_BYTES
    up_bytes = _UP_BYTES if version >= 3 else 0
    if len(data) < offset + 4 * columns + up_bytes + len(_STREAMS) * _LENGTH.size + _CRC_BYTES:
        raise CompactFormatError("truncated header")
    dc = np.frombuffer(data, "<f4", columns, offset).astype(np.float32)
    offset += 4 * columns
    if not (np.all(np.isfinite(bbox)) and np.all(bbox[1::2] >= bbox[0::2])
            and np.all(np.isfinite(dc))):
        raise CompactFormatError("bounding box or DC coefficients not finite (or min > max)")
    up = None
    if up_bytes:
        up = np.frombuffer(data, "<f4", 3, offset).astype(np.float32)
        offset += up_bytes
        if not _valid_up(up):
            raise CompactFormatError("up vector neither zero nor of unit length")
        up = up if up.any() else None
    streams = {}
    for name in _STREAMS:
        if offset + _LENGTH.size > len(data) - _CRC_BYTES:
            raise CompactFormatError(f"truncated before the {name} stream")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if length > len(data) - _CRC_BYTES - offset:
            raise CompactFormatError(f"{name} stream of {length} bytes runs past the end")
        streams[name] = data[offset:offset + length]
        offset += length
    if offset != len(data) - _CRC_BYTES:
        raise CompactFormatError(f"{len(data) - _CRC_BYTES - offset} unexpected bytes after the "
                                 f"streams")

    voxels, geometry_depth = decode_octree(streams["geometry"], n)
    if geometry_depth != depth or voxels.shape[0] != n:
        raise CompactFormatError(f"geometry holds {voxels.shape[0]} voxels at depth "
                                 f"{geometry_depth}, the header says {n} at depth {depth}")
    plan = build_raht(voxels, depth)
    reader = StreamReader(streams["attribute"])
    exponents = np.stack([reader.read(len(plan.levels)) for _ in range(columns)])
    if int(np.abs(exponents).max(initial=0)) > EXPONENT_LIMIT:
        raise CompactFormatError(f"a step exponent beyond ±{EXPONENT_LIMIT}")
    sizes = segment_sizes(plan)
    grouped = np.stack([np.concatenate([reader.read(size) for size in sizes])
                        for _ in range(columns)], axis=1)
    codes = np.empty((n - 1, columns), dtype=np.int64)
    codes[plan.high_slots().numpy() - 1] = grouped
    if int(np.abs(codes).max(initial=0)) > MAX_CODE:
        raise CompactFormatError(f"an AC code beyond ±{MAX_CODE}")
    vq_indices = reader.read(n) if k else np.zeros(0, dtype=np.int64)
    if vq_indices.size and (vq_indices.min() < 0 or vq_indices.max() >= k):
        raise CompactFormatError(f"VQ indices outside the {k}-row codebook")
    codebook_codes = reader.read(k * rest).reshape(k, rest) if k \
        else np.zeros((0, 0), dtype=np.int64)
    reader.close()
    if int(np.abs(codebook_codes).max(initial=0)) > MAX_CODE:
        raise CompactFormatError(f"a codebook code beyond ±{MAX_CODE}")
    return CompactBitstream(layout=layout, sh_degree=sh_degree, depth=depth, quality=quality,
                            bbox=bbox, voxels=voxels, dc=dc, exponents=exponents, codes=codes,
                            vq_indices=vq_indices, codebook_codes=codebook_codes,
                            codebook_exponent=cb_exponent, plan=plan, up=up)

