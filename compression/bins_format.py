"""The "bins" container (CODEC.md §8): the ``bins/`` folder, ``bins.zip`` and their strict reader
(the format of ``bins_codec.BinsCodec``).

Files of ``<dir>/bins/`` (every array file is an ``.npz``; the same files, in this order, are
the members of ``<dir>/bins.zip``); a layout holds the files its record lists
(``layouts.Layout.files``):

============  =======================================================================
file          content
============  =======================================================================
meta.json     format version, layout, SH degree, num_bits, quantizer kind, N, C, B, D, K
oct.npz       ``points`` int64 [N] ascending voxel keys; ``params`` float64 [6] bbox
              (xmin, xmax, ymin, ymax, zmin, zmax)
orgb.npz      ``f`` float32 [C] RAHT DC per column; ``i`` uint8/uint16 [C, N-1] AC codes
t.npz         ``t`` float64 [2 + 2·Q·B]: depth, n_block, then (scale, zero_point) per
              quantizer in index order c·B + j; Q = C + C', the C'·B quantizers of the
              directly quantized columns (official: the 3 log-scales) after the RAHT ones
ct.npz        layouts with direct columns: ``i`` uint8/uint16 [C', N] codes, one row per column
ntk.npz       layouts with VQ: ``ntk`` int32 [N] VQ indices
um.npz        layouts with VQ: ``umap`` float32 [K, F] codebook (official: F = 3·((d+1)²-1))
============  =======================================================================

Determinism: ``np.savez_compressed`` stamps each member with the current time, so the same
content would give different bytes. :func:`_npz_bytes` writes the identical format (a zip of
``<key>.npy`` members, deflated, readable by ``np.load``) with a fixed timestamp
(1980-01-01 00:00:00), fixed permissions and the keys in a fixed order; ``bins.zip`` stores the
(already deflated) members the same way. The same :class:`BinsBitstream` therefore always gives a
byte-identical ``bins.zip``.

Reading (:func:`read_bins`) trusts nothing: it reads ``meta.json`` first, derives the
exact dtype and shape of every array from it, refuses any member whose declared size exceeds
what those imply (zip bombs) before decompressing it, checks every ``.npy`` header before
reading its data (``allow_pickle=False``), then checks values (ascending keys, code range,
finite ranges). Any problem is one :class:`BitstreamError` naming the file.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from compression.codec import Container, Layout
from compression.octree import MAX_DEPTH
from compression.quantization import MAX_BITS, QUANTIZER_KINDS, storage_dtype
from utils.output_paths import BINS_DIR, BINS_ZIP
from utils.system_utils import atomic_path

FORMAT_VERSION = 1
META_FILE = "meta.json"
_DIRECT_FIELDS = ("direct_codes", "direct_scale", "direct_zero_point")
_VQ_FIELDS = ("vq_indices", "codebook")
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_MAX_META_BYTES = 64 * 1024
# Slack allowed above the raw array bytes: .npy header (≤ 64 KiB when max_header_size is
# respected) plus zip headers, and deflate's worst-case expansion (~0.03 % + a few bytes).
_NPY_HEADER_SLACK = 64 * 1024
_ZIP_SLACK = 4096
#: the first bytes of every zip archive (local file header or, when empty, end of directory)
_ZIP_SIGNATURE = b"PK"
#: the container: ``bins.zip`` (its size is the reported size) and the unpacked ``bins/``
BINS = Container(BINS_ZIP, BINS_DIR)


class BitstreamError(ValueError):
    """A bins folder / bins.zip that is corrupt, truncated or inconsistent with its meta.json."""


@dataclass
class BinsBitstream:
    """Everything the files hold, as numpy arrays (N Gaussians, C RAHT columns, C' direct
    columns, B blocks).

    Attributes:
        layout: the layout record (its name is stored in meta.json).
        sh_degree: d.
        num_bits: b, bits per code (1..16).
        quantizer: "vanilla" or "lsq".
        depth: D, octree bits per axis.
        keys: [N] int64 ascending voxel keys x·2^(2D) + y·2^D + z.
        bbox: [6] float64 xmin, xmax, ymin, ymax, zmin, zmax.
        dc: [C] float32 RAHT DC coefficient per column.
        codes: [C, N-1] uint8/uint16 AC codes, one row per column in slot order.
        scale: [C, B] float64 quantizer step per (column, block).
        zero_point: [C, B] float64 integer-valued zero point per (column, block).
        direct_codes: layouts with direct columns, [C', N] codes (key order), one row per
            column (official: the 3 log-scales).
        direct_scale: [C', B] steps of the direct quantizers.
        direct_zero_point: [C', B] zero points of the direct quantizers.
        vq_indices: layouts with VQ, [N] int32 codebook index per Gaussian.
        codebook: layouts with VQ, [K, F] float32 codebook of the VQ columns (official: f_rest
            in the in-memory (K, (d+1)²-1, 3) order flattened).
    """

    layout: Layout
    sh_degree: int
    num_bits: int
    quantizer: str
    depth: int
    keys: np.ndarray
    bbox: np.ndarray
    dc: np.ndarray
    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    direct_codes: Optional[np.ndarray] = None
    direct_scale: Optional[np.ndarray] = None
    direct_zero_point: Optional[np.ndarray] = None
    vq_indices: Optional[np.ndarray] = None
    codebook: Optional[np.ndarray] = None

    @property
    def num_gaussians(self) -> int:
        """N."""
        return int(self.keys.shape[0])

    @property
    def num_columns(self) -> int:
        """C, the number of RAHT columns."""
        return int(self.dc.shape[0])

    @property
    def n_block(self) -> int:
        """B, blocks per column."""
        return int(self.scale.shape[1])

    @property
    def codebook_size(self) -> int:
        """K (0 for layouts without VQ)."""
        return 0 if self.codebook is None else int(self.codebook.shape[0])

    def meta(self) -> dict[str, Any]:
        """The meta.json content."""
        return {"format_version": FORMAT_VERSION, "layout": self.layout.name,
                "sh_degree": self.sh_degree, "num_bits": self.num_bits,
                "quantizer": self.quantizer, "N": self.num_gaussians, "C": self.num_columns,
                "B": self.n_block, "D": self.depth, "K": self.codebook_size}

    def trans(self) -> np.ndarray:
        """The t.npz array [2 + 2·Q·B] float64 (see the module docstring)."""
        scale, zero_point = self.scale, self.zero_point
        if self.layout.direct:
            scale = np.concatenate([scale, self.direct_scale])
            zero_point = np.concatenate([zero_point, self.direct_zero_point])
        pairs = np.stack([scale, zero_point], axis=-1).astype(np.float64).reshape(-1)
        return np.concatenate([np.array([self.depth, self.n_block], np.float64), pairs])

    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """File name → {key → array} of the layout's files, in the fixed file and key order."""
        content = {"oct.npz": {"points": self.keys, "params": self.bbox},
                   "orgb.npz": {"f": self.dc, "i": self.codes},
                   "t.npz": {"t": self.trans()},
                   "ct.npz": {"i": self.direct_codes},
                   "ntk.npz": {"ntk": self.vq_indices},
                   "um.npz": {"umap": self.codebook}}
        return {name: content[name] for name in self.layout.files}


# ------------------------------------------------------------------------------------ writing

def write_bins(bitstream: BinsBitstream, out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/bins/`` and ``<out_dir>/bins.zip`` (both atomically).

    Args:
        bitstream: the content; checked against its own meta before anything is written.
        out_dir: destination folder (created if needed).

    Returns:
        Path of ``bins.zip`` (its byte size is the reported size).

    Raises:
        ValueError: the bitstream is inconsistent (wrong dtype/shape/count); nothing written.
    """
    out_dir = Path(out_dir)
    meta = bitstream.meta()
    try:
        _validate_meta(meta, "meta", {bitstream.layout.name: bitstream.layout})
        layout = bitstream.layout
        needed = (_DIRECT_FIELDS if layout.direct else ()) + (_VQ_FIELDS if layout.vq else ())
        missing = [name for name in needed if getattr(bitstream, name) is None]
        if missing:
            raise BitstreamError(f"layout {layout.name} needs {missing}")
        files = bitstream.arrays()
        spec = _expected_arrays(meta, layout)
        for name, arrays in files.items():
            for key, arr in arrays.items():
                shape, dtypes = spec[name][key]
                if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype not in dtypes:
                    found = f"{arr.dtype}{list(arr.shape)}" if isinstance(arr, np.ndarray) else arr
                    raise BitstreamError(f"{name}/{key} must be "
                                         f"{'|'.join(map(str, dtypes))}{list(shape)}, got {found}")
        _check_values(bitstream, "bitstream")
    except BitstreamError as exc:
        raise ValueError(f"cannot write {out_dir}: {exc}") from None
    members: list[tuple[str, bytes]] = [
        (META_FILE, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())]
    members += [(name, _npz_bytes(arrays)) for name, arrays in files.items()]
    with atomic_path(out_dir / BINS.folder_name) as tmp:
        tmp.mkdir()
        for name, data in members:
            (tmp / name).write_bytes(data)
    with atomic_path(out_dir / BINS.file_name) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for name, data in members:
                archive.writestr(_zip_info(name, zipfile.ZIP_STORED), data)
    return out_dir / BINS.file_name


def _zip_info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = compress_type
    info.external_attr = 0o644 << 16
    info.create_system = 3  # Unix, whatever the host
    return info


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Deterministic equivalent of ``np.savez_compressed`` (fixed timestamps, key order)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            with archive.open(_zip_info(f"{key}.npy", zipfile.ZIP_DEFLATED), "w",
                              force_zip64=arr.nbytes > 2**30) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ reading

def is_bins_source(path: str | os.PathLike) -> bool:
    """Whether ``path`` may hold a bins container: a folder, or a file starting with a zip
    signature (a truncated archive too: :func:`read_bins` then says so)."""
    path = Path(path)
    if path.is_dir():
        return True
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(_ZIP_SIGNATURE)) == _ZIP_SIGNATURE


def read_bins(path: str | os.PathLike, layouts: Mapping[str, Layout]) -> BinsBitstream:
    """Read and fully validate a bins folder or a ``bins.zip``.

    Args:
        path: the ``bins`` folder or the ``bins.zip`` archive.
        layouts: the layouts a stream may name in its meta.json, by name.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        BitstreamError: (a ValueError) any missing, extra, oversized, corrupt, truncated or
            inconsistent content; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        source: _Source = _FolderSource(path)
    elif path.is_file():
        if not zipfile.is_zipfile(path):
            raise BitstreamError(f"{path}: neither a bins folder nor a zip archive "
                                 f"(truncated or corrupt)")
        source = _ZipSource(path)
    else:
        raise FileNotFoundError(f"{path}: no bins folder or bins.zip there")
    with source:
        meta = _read_meta(source, layouts)
        layout = layouts[meta["layout"]]
        spec = _expected_arrays(meta, layout)
        expected_names = {META_FILE, *spec}
        names = set(source.sizes)
        if names != expected_names:
            missing, extra = sorted(expected_names - names), sorted(names - expected_names)
            raise BitstreamError(f"{path}: expected members {sorted(expected_names)}; "
                                 f"missing {missing}, unexpected {extra}")
        arrays = {name: _read_npz(source, name, spec[name]) for name in spec}
    bitstream = _assemble(meta, layout, arrays, path)
    _check_values(bitstream, str(path))
    return bitstream


class _Source:
    """A set of named members (bins folder files or zip members) with declared sizes."""

    label: Path
    sizes: dict[str, int]

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def where(self, name: str) -> str:
        return f"{self.label}/{name}" if self.label.is_dir() else f"{self.label}:{name}"


class _FolderSource(_Source):
    def __init__(self, folder: Path) -> None:
        self.label = folder
        self.sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}

    def read(self, name: str) -> bytes:
        return (self.label / name).read_bytes()


class _ZipSource(_Source):
    def __init__(self, archive: Path) -> None:
        self.label = archive
        try:
            self.zip = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BitstreamError(f"{archive}: unreadable zip archive ({exc})") from None
        infos = self.zip.infolist()
        self.sizes = {info.filename: info.file_size for info in infos}
        if len(self.sizes) != len(infos):
            raise BitstreamError(f"{archive}: duplicate member names")

    def read(self, name: str) -> bytes:
        return self.zip.read(name)

    def __exit__(self, *exc: object) -> None:
        self.zip.close()


def _guarded(where: str, action: Callable[[], Any]) -> Any:
    """Run a read, turning every low-level failure into one BitstreamError naming ``where``."""
    try:
        return action()
    except BitstreamError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            UnicodeDecodeError, NotImplementedError, RuntimeError) as exc:
        raise BitstreamError(f"{where}: corrupt or truncated ({type(exc).__name__}: {exc})") \
            from None


def _read_meta(source: _Source, layouts: Mapping[str, Layout]) -> dict[str, Any]:
    where = source.where(META_FILE)
    if META_FILE not in source.sizes:
        raise BitstreamError(f"{where}: missing")
    if source.sizes[META_FILE] > _MAX_META_BYTES:
        raise BitstreamError(f"{where}: {source.sizes[META_FILE]} bytes, more than a meta file "
                             f"can hold ({_MAX_META_BYTES})")
    meta = _guarded(where, lambda: json.loads(source.read(META_FILE).decode("utf-8")))
    _validate_meta(meta, where, layouts)
    return meta


def _validate_meta(meta: Any, where: str, layouts: Mapping[str, Layout]) -> None:
    """Check meta.json's fields and their mutual consistency (its layout one of ``layouts``)."""
    if not isinstance(meta, dict):
        raise BitstreamError(f"{where}: expected a JSON object")
    int_fields = ("format_version", "sh_degree", "num_bits", "N", "C", "B", "D", "K")
    for key in int_fields + ("layout", "quantizer"):
        if key not in meta:
            raise BitstreamError(f"{where}: missing field '{key}'")
    for key in int_fields:
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0:
            raise BitstreamError(f"{where}: '{key}' must be a non-negative integer, "
                                 f"got {meta[key]!r}")
    layout = layouts.get(meta["layout"])
    checks = [
        (meta["format_version"] == FORMAT_VERSION, f"format_version {FORMAT_VERSION}"),
        (layout is not None, f"layout in {tuple(layouts)}"),
        (meta["quantizer"] in QUANTIZER_KINDS, f"quantizer in {QUANTIZER_KINDS}"),
        (1 <= meta["num_bits"] <= MAX_BITS, f"1 <= num_bits <= {MAX_BITS}"),
        (meta["sh_degree"] <= 3, "sh_degree <= 3"),
        (1 <= meta["D"] <= MAX_DEPTH, f"1 <= D <= {MAX_DEPTH}"),
        (meta["N"] >= 2, "N >= 2"),
        (1 <= meta["B"] <= meta["N"] - 1, "1 <= B <= N - 1"),
        (layout is None or meta["C"] == layout.width(layout.raht, meta["sh_degree"]),
         "C matching the layout and SH degree"),
        (layout is None or ((meta["K"] == 0) != bool(layout.vq) and meta["K"] <= meta["N"]),
         "K = 0 without VQ, 1 <= K <= N with VQ"),
    ]
    for ok, what in checks:
        if not ok:
            raise BitstreamError(f"{where}: expected {what}; got {json.dumps(meta, sort_keys=True)}")


def _expected_arrays(meta: dict[str, Any], layout: Layout
                     ) -> dict[str, dict[str, tuple[tuple[int, ...], tuple[np.dtype, ...]]]]:
    """File → key → (shape, allowed dtypes) implied by meta.json of a ``layout`` stream."""
    d = meta["sh_degree"]
    n, c, b, k = meta["N"], meta["C"], meta["B"], meta["K"]
    direct = layout.width(layout.direct, d)
    codes = (storage_dtype(meta["num_bits"]),)
    f64, f32 = (np.dtype(np.float64),), (np.dtype(np.float32),)
    spec = {"oct.npz": {"points": ((n,), (np.dtype(np.int64),)), "params": ((6,), f64)},
            "orgb.npz": {"f": ((c,), f32), "i": ((c, n - 1), codes)},
            "t.npz": {"t": ((2 + 2 * (c + direct) * b,), f64)},
            "ct.npz": {"i": ((direct, n), codes)},
            "ntk.npz": {"ntk": ((n,), (np.dtype(np.int32),))},
            "um.npz": {"umap": ((k, layout.width(layout.vq, d)), f32)}}
    return {name: spec[name] for name in layout.files}


def _npy_limit(shape: tuple[int, ...], dtypes: tuple[np.dtype, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) * max(d.itemsize for d in dtypes) + _NPY_HEADER_SLACK


def _read_npz(source: _Source, name: str,
              spec: dict[str, tuple[tuple[int, ...], tuple[np.dtype, ...]]]) -> dict[str, np.ndarray]:
    """Read one .npz member, checking sizes and headers before any data is decompressed."""
    where = source.where(name)
    raw_limit = sum(_npy_limit(*s) for s in spec.values())
    limit = raw_limit + raw_limit // 512 + _ZIP_SLACK * len(spec)
    if source.sizes[name] > limit:
        raise BitstreamError(f"{where}: {source.sizes[name]} bytes declared, more than the "
                             f"{limit} bytes meta.json implies")
    data = _guarded(where, lambda: source.read(name))
    return _guarded(where, lambda: _parse_npz(data, where, spec))


def _parse_npz(data: bytes, where: str,
               spec: dict[str, tuple[tuple[int, ...], tuple[np.dtype, ...]]]) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        expected = {f"{key}.npy" for key in spec}
        if set(infos) != expected:
            raise BitstreamError(f"{where}: expected arrays {sorted(expected)}, "
                                 f"found {sorted(infos)}")
        arrays = {}
        for key, (shape, dtypes) in spec.items():
            info = infos[f"{key}.npy"]
            if info.file_size > _npy_limit(shape, dtypes):
                raise BitstreamError(f"{where}: array '{key}' declares {info.file_size} bytes, "
                                     f"more than meta.json implies")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                found_shape, fortran, dtype = header(member)
            if dtype.hasobject or dtype not in dtypes or tuple(found_shape) != shape or fortran:
                raise BitstreamError(
                    f"{where}: array '{key}' must be {'|'.join(map(str, dtypes))}{list(shape)}, "
                    f"found {dtype}{list(found_shape)}{' (Fortran order)' if fortran else ''}")
            with archive.open(info) as member:
                arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
        return arrays


def _assemble(meta: dict[str, Any], layout: Layout, arrays: dict[str, dict[str, np.ndarray]],
              path: Path) -> BinsBitstream:
    c, b = meta["C"], meta["B"]
    t = arrays["t.npz"]["t"]
    if t[0] != meta["D"] or t[1] != b:
        raise BitstreamError(f"{path}: t.npz starts with depth {t[0]}, n_block {t[1]}; "
                             f"meta.json says D = {meta['D']}, B = {b}")
    pairs = t[2:].reshape(-1, b, 2)
    optional: dict[str, np.ndarray] = {}
    if layout.direct:
        optional.update(direct_codes=arrays["ct.npz"]["i"], direct_scale=pairs[c:, :, 0].copy(),
                        direct_zero_point=pairs[c:, :, 1].copy())
    if layout.vq:
        optional.update(vq_indices=arrays["ntk.npz"]["ntk"], codebook=arrays["um.npz"]["umap"])
    return BinsBitstream(layout=layout, sh_degree=meta["sh_degree"],
                         num_bits=meta["num_bits"], quantizer=meta["quantizer"], depth=meta["D"],
                         keys=arrays["oct.npz"]["points"], bbox=arrays["oct.npz"]["params"],
                         dc=arrays["orgb.npz"]["f"], codes=arrays["orgb.npz"]["i"],
                         scale=pairs[:c, :, 0].copy(), zero_point=pairs[:c, :, 1].copy(),
                         **optional)


def _check_values(bs: BinsBitstream, where: str) -> None:
    """Value checks beyond dtype/shape: key order and range, code range, finite ranges."""
    max_code = 2 ** bs.num_bits - 1
    keys = np.asarray(bs.keys)
    problems = [
        (bs.quantizer in QUANTIZER_KINDS, f"quantizer {bs.quantizer!r} not in {QUANTIZER_KINDS}"),
        (keys.ndim == 1 and keys.size >= 2, "oct.npz: at least 2 keys needed"),
        (keys.size < 2 or bool(np.all(np.diff(keys) > 0)),
         "oct.npz: keys not strictly ascending"),
        (keys.size == 0 or (keys[0] >= 0 and keys[-1] < 2 ** (3 * bs.depth)),
         f"oct.npz: keys outside [0, 2^(3·{bs.depth}))"),
        (bool(np.all(np.isfinite(bs.bbox))) and bool(np.all(bs.bbox[1::2] >= bs.bbox[0::2])),
         "oct.npz: bbox not finite or min > max"),
        (bool(np.all(np.isfinite(bs.dc))), "orgb.npz: non-finite DC"),
        (int(bs.codes.max(initial=0)) <= max_code, f"orgb.npz: codes above {max_code}"),
    ]
    scales = [(bs.scale, bs.zero_point, "t.npz")]
    layout = bs.layout
    if layout.direct:
        scales.append((bs.direct_scale, bs.direct_zero_point, "t.npz (direct quantizers)"))
        problems.append((bs.direct_codes is not None
                         and int(bs.direct_codes.max(initial=0)) <= max_code,
                         f"ct.npz: codes above {max_code}"))
    if layout.vq:
        problems += [
            (bs.vq_indices is not None and bs.codebook is not None
             and bool(np.all((bs.vq_indices >= 0) & (bs.vq_indices < bs.codebook.shape[0]))),
             "ntk.npz: indices outside the codebook"),
            (bs.codebook is not None and bool(np.all(np.isfinite(bs.codebook))),
             "um.npz: non-finite codebook"),
        ]
    for scale, zero_point, name in scales:
        problems += [
            (scale is not None and bool(np.all(np.isfinite(scale) & (scale >= 0))),
             f"{name}: scales must be finite and >= 0"),
            (zero_point is not None and bool(np.all((zero_point == np.round(zero_point))
                                                    & (zero_point >= 0)
                                                    & (zero_point <= max_code))),
             f"{name}: zero points must be integers in [0, {max_code}]"),
        ]
    for ok, what in problems:
        if not ok:
            raise BitstreamError(f"{where}: {what}")

