"""Tell splat model files apart by content, and output formats by name.

Kinds read (:func:`detect_format`), by signature where the format has one:

==================  ===========================================================================
kind                how it is recognised
==================  ===========================================================================
``ply``             ``ply`` header whose elements hold no ``chunk`` (the graphdeco 3DGS PLY)
``compressed_ply``  ``ply`` header with a ``chunk`` element (PlayCanvas compressed PLY)
``bins``            our codec's bitstream: a folder, or a zip holding ``meta.json`` + ``oct.npz``
``sog``             a zip holding ``meta.json`` + ``.webp`` images (PlayCanvas SOG bundle)
``spz``             Niantic SPZ: version 2/3 is one gzip stream whose payload starts with
                    ``NGSP``; version 4 starts with ``NGSP`` itself (32-byte header, ZSTD streams)
``compact``         our compact bitstream: ``GSCF`` then a version byte
``splat``           no signature: the ``.splat`` extension, 32-byte records
                    (antimatter15 layout); a size that is no whole number of records is refused
``ksplat``          no signature: the ``.ksplat`` extension (GaussianSplats3D); the size must
                    equal what its main and section headers describe
==================  ===========================================================================

Kinds written (:func:`export_format`) follow the destination's extension: ``.ply``,
``.compressed.ply``, ``.spz``, ``.sog`` and ``.html`` (a self-contained viewer page).

The project's one PLY-header reader is here too: :func:`ply_elements` (element counts, which
tell the two PLY kinds apart) and :func:`ply_vertex_count` (a model's Gaussians).
"""
from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib
from pathlib import Path

from compression.compact_format import COMPACT_MAGIC

#: kinds converted to a standard PLY by splat-transform, with the file name extension the tool
#: recognises each by (it reads a compressed.ply as a ``.ply`` and finds its chunk element)
TOOL_EXTENSIONS: dict[str, str] = {
    "compressed_ply": ".compressed.ply", "spz": ".spz", "sog": ".sog", "splat": ".splat",
    "ksplat": ".ksplat"}
#: output kinds by destination extension (the longest matching suffix wins)
EXPORT_EXTENSIONS: dict[str, str] = {
    ".compressed.ply": "compressed_ply", ".ply": "ply", ".spz": "spz", ".sog": "sog",
    ".html": "html"}

#: kinds that are our codec's bitstreams (``compression.bitstream.read_bitstream`` reads them)
BITSTREAM_KINDS = ("bins", "compact")
SPZ_MAGIC = b"NGSP"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK"
SPLAT_RECORD_BYTES = 32  # float32 xyz, float32 scales, uint8 RGBA, uint8 quaternion
_PLY_HEADER_LIMIT = 1 << 20
# .ksplat (GaussianSplats3D SplatBuffer 0.1): header sizes and bytes per splat per compression
# level: (centre + scale + rotation + colour bytes, bytes per SH value)
_KSPLAT_HEADER_BYTES = 4096
_KSPLAT_SECTION_HEADER_BYTES = 1024
_KSPLAT_LEVELS = {0: (12 + 12 + 16 + 4, 4), 1: (6 + 6 + 8 + 4, 2), 2: (6 + 6 + 8 + 4, 1)}
_SH_VALUES = (0, 9, 24, 45)


def detect_format(path: str | os.PathLike) -> str:
    """The kind of model file or folder at ``path`` (see the module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unrecognised, empty or inconsistent file; the message names it.
    """
    path = Path(path)
    if path.is_dir():
        return "bins"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith((b"ply\n", b"ply\r")):
        return _ply_kind(path)
    if head.startswith(ZIP_MAGIC):
        return _zip_kind(path)
    if head.startswith(SPZ_MAGIC) or (head.startswith(GZIP_MAGIC) and _gzip_holds_spz(path)):
        return "spz"
    if head.startswith(COMPACT_MAGIC) and len(head) > len(COMPACT_MAGIC):
        return "compact"
    name = path.name.lower()
    if name.endswith(".splat"):
        _check_splat_size(path)
        return "splat"
    if name.endswith(".ksplat"):
        _check_ksplat_size(path)
        return "ksplat"
    raise ValueError(f"{path}: not a model file this tool reads (a 3DGS or compressed PLY, a "
                     ".spz, .sog, .splat or .ksplat file, a bins folder, bins.zip or .gsc)")


def export_format(path: str | os.PathLike) -> str:
    """The kind written for destination ``path``, from its extension.

    Raises:
        ValueError: an extension without a writer.
    """
    name = Path(path).name.lower()
    for suffix, kind in EXPORT_EXTENSIONS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    raise ValueError(f"{path}: cannot tell the output format from the name; use one of "
                     f"{', '.join(EXPORT_EXTENSIONS)}")


def ply_elements(path: str | os.PathLike) -> dict[str, int]:
    """The elements a PLY header declares, name → count in header order (the project's one
    PLY-header reader: format detection, Gaussian counts of the report, peers and sweeps).

    Raises:
        ValueError: not a PLY file, no ``end_header`` in its first ``_PLY_HEADER_LIMIT`` bytes,
            or an element line without a whole count.
    """
    path = Path(path)
    with path.open("rb") as handle:
        header = handle.read(_PLY_HEADER_LIMIT)
    if not header.startswith((b"ply\n", b"ply\r")):
        raise ValueError(f"{path}: not a PLY file (no 'ply' header line)")
    end = header.find(b"end_header")
    if end < 0:
        raise ValueError(f"{path}: PLY header without 'end_header' in its first "
                         f"{_PLY_HEADER_LIMIT} bytes")
    elements = {}
    for line in header[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "element":
            if not words[2].isdigit():
                raise ValueError(f"{path}: PLY header line '{line}' has no element count")
            elements[words[1]] = int(words[2])
    return elements


def ply_vertex_count(path: str | os.PathLike) -> int:
    """Number of Gaussians in a PLY: the count of its ``vertex`` element.

    Raises:
        ValueError: not a PLY header (:func:`ply_elements`), or one without a vertex element.
    """
    elements = ply_elements(path)
    if "vertex" not in elements:
        raise ValueError(f"{path}: PLY header without an 'element vertex' line")
    return elements["vertex"]


def _ply_kind(path: Path) -> str:
    return "compressed_ply" if "chunk" in ply_elements(path) else "ply"


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path}: corrupt zip archive ({exc})") from None
    if "meta.json" in names and "oct.npz" in names:
        return "bins"
    if "meta.json" in names and any(name.lower().endswith(".webp") for name in names):
        return "sog"
    raise ValueError(f"{path}: a zip archive that is neither a bins.zip (meta.json + oct.npz …) "
                     "nor a .sog bundle (meta.json + .webp images)")


def _gzip_holds_spz(path: Path) -> bool:
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read(len(SPZ_MAGIC)) == SPZ_MAGIC
    except (OSError, EOFError, zlib.error):
        return False


def _check_splat_size(path: Path) -> None:
    size = path.stat().st_size
    if size == 0 or size % SPLAT_RECORD_BYTES:
        raise ValueError(f"{path}: {size} bytes is not a whole, non-zero number of "
                         f"{SPLAT_RECORD_BYTES}-byte .splat records")


def _check_ksplat_size(path: Path) -> None:
    """Refuse a .ksplat whose size differs from what its headers describe (truncation)."""
    size = path.stat().st_size
    if size < _KSPLAT_HEADER_BYTES:
        raise ValueError(f"{path}: {size} bytes, shorter than the {_KSPLAT_HEADER_BYTES}-byte "
                         ".ksplat header")
    with path.open("rb") as handle:
        main = handle.read(_KSPLAT_HEADER_BYTES)
        major, minor = main[0], main[1]
        (max_sections,) = struct.unpack_from("<I", main, 4)
        (num_splats,) = struct.unpack_from("<I", main, 16)
        (level,) = struct.unpack_from("<H", main, 20)
        if major != 0 or minor < 1 or level not in _KSPLAT_LEVELS:
            raise ValueError(f"{path}: unsupported .ksplat version {major}.{minor} or "
                             f"compression level {level}")
        sections_end = _KSPLAT_HEADER_BYTES + max_sections * _KSPLAT_SECTION_HEADER_BYTES
        if size < sections_end:
            raise ValueError(f"{path}: {size} bytes, shorter than its {max_sections} .ksplat "
                             "section headers")
        base_bytes, sh_value_bytes = _KSPLAT_LEVELS[level]
        expected, counted = sections_end, 0
        for _ in range(max_sections):
            section = handle.read(_KSPLAT_SECTION_HEADER_BYTES)
            splats, max_splats, _, buckets = struct.unpack_from("<4I", section, 0)
            (bucket_bytes,) = struct.unpack_from("<H", section, 20)
            (partial_buckets,) = struct.unpack_from("<I", section, 36)
            (sh_degree,) = struct.unpack_from("<H", section, 40)
            if sh_degree >= len(_SH_VALUES):
                raise ValueError(f"{path}: .ksplat section with SH degree {sh_degree}")
            record = base_bytes + _SH_VALUES[sh_degree] * sh_value_bytes
            expected += bucket_bytes * buckets + 4 * partial_buckets + record * max_splats
            counted += splats
    if counted != num_splats or num_splats == 0:
        raise ValueError(f"{path}: .ksplat sections hold {counted} splats, its header says "
                         f"{num_splats}")
    if size != expected:
        raise ValueError(f"{path}: {size} bytes, but its .ksplat headers describe {expected}")
