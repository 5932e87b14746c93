"""bins folder / bins.zip (read and written through the one dispatch of compression.bitstream):
round trip, determinism, layout sizes, and refusal of corrupt input."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from compression.bins_format import BinsBitstream, BitstreamError
from compression.bitstream import read_bitstream, write_bitstream
from compression.layouts import LAYOUTS
from compression.quantization import storage_dtype as code_dtype
from utils.output_paths import BINS_DIR, BINS_ZIP

N, B, DEPTH, SH_DEGREE = 64, 5, 8, 3
C = 7  # the official layout's RAHT columns (the corruption tests use that layout)


def _bitstream(layout: str, num_bits: int = 8, seed: int = 0) -> BinsBitstream:
    """A consistent bitstream of N random Gaussians (C from the layout)."""
    rng = np.random.default_rng(seed)
    c = 55 if layout == "seed" else 7
    keys = np.sort(rng.choice(2 ** (3 * DEPTH), N, replace=False)).astype(np.int64)
    max_code = 2 ** num_bits - 1
    dtype = code_dtype(num_bits)
    official = {}
    if layout == "official":
        k = 8
        official = {"direct_codes": rng.integers(0, max_code + 1, (3, N)).astype(dtype),
                    "direct_scale": rng.random((3, B)),
                    "direct_zero_point": rng.integers(0, max_code + 1, (3, B)).astype(np.float64),
                    "vq_indices": rng.integers(0, k, N).astype(np.int32),
                    "codebook": rng.normal(size=(k, 45)).astype(np.float32)}
    return BinsBitstream(layout=LAYOUTS[layout], sh_degree=SH_DEGREE, num_bits=num_bits,
                         quantizer="vanilla", depth=DEPTH, keys=keys,
                         bbox=np.array([-1.0, 2.0, 0.0, 1.5, -3.0, 0.25]),
                         dc=rng.normal(size=c).astype(np.float32),
                         codes=rng.integers(0, max_code + 1, (c, N - 1)).astype(dtype),
                         scale=rng.random((c, B)),
                         zero_point=rng.integers(0, max_code + 1, (c, B)).astype(np.float64),
                         **official)


def _assert_same(a: BinsBitstream, b: BinsBitstream) -> None:
    for field in a.__dataclass_fields__:
        x, y = getattr(a, field), getattr(b, field)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, field
            np.testing.assert_array_equal(x, y, err_msg=field)
        else:
            assert x == y, field


@pytest.mark.parametrize("layout", ["seed", "official"])
@pytest.mark.parametrize("num_bits", [3, 8, 12])
def test_round_trip_folder_and_zip(tmp_path: Path, layout: str, num_bits: int) -> None:
    original = _bitstream(layout, num_bits)
    archive = write_bitstream(original, tmp_path)
    assert archive == tmp_path / BINS_ZIP
    _assert_same(original, read_bitstream(tmp_path / BINS_DIR))
    _assert_same(original, read_bitstream(archive))
    # A renamed archive is still recognised by its content.
    renamed = tmp_path / "whatever.bin"
    shutil.copy(archive, renamed)
    _assert_same(original, read_bitstream(renamed))


def test_files_are_plain_npz_readable_by_numpy(tmp_path: Path) -> None:
    original = _bitstream("official")
    write_bitstream(original, tmp_path)
    bins = tmp_path / BINS_DIR
    expected = {"meta.json", "oct.npz", "orgb.npz", "t.npz", "ct.npz", "ntk.npz", "um.npz"}
    assert {p.name for p in bins.iterdir()} == expected
    with zipfile.ZipFile(tmp_path / BINS_ZIP) as archive:
        assert archive.namelist() == ["meta.json", "oct.npz", "orgb.npz", "t.npz", "ct.npz",
                                      "ntk.npz", "um.npz"]
        for name in expected - {"meta.json"}:
            assert archive.read(name) == (bins / name).read_bytes()
    with np.load(bins / "orgb.npz", allow_pickle=False) as orgb:
        np.testing.assert_array_equal(orgb["i"], original.codes)
        np.testing.assert_array_equal(orgb["f"], original.dc)
    with np.load(bins / "oct.npz", allow_pickle=False) as octree:
        np.testing.assert_array_equal(octree["points"], original.keys)
    meta = json.loads((bins / "meta.json").read_text())
    assert (meta["N"], meta["C"], meta["B"], meta["D"], meta["K"]) == (N, 7, B, DEPTH, 8)


@pytest.mark.parametrize("layout, columns", [("seed", 55), ("official", 7 + 3)])
def test_trans_layout(tmp_path: Path, layout: str, columns: int) -> None:
    original = _bitstream(layout)
    write_bitstream(original, tmp_path)
    with np.load(tmp_path / BINS_DIR / "t.npz", allow_pickle=False) as trans:
        t = trans["t"]
    assert t.dtype == np.float64 and t.shape == (2 + 2 * columns * B,)
    assert (t[0], t[1]) == (DEPTH, B)
    # Quantizer c·B + j holds (scale, zero_point) at 2 + 2(c·B + j).
    c, j = 3, 2
    assert t[2 + 2 * (c * B + j)] == original.scale[c, j]
    assert t[3 + 2 * (c * B + j)] == original.zero_point[c, j]
    if layout == "official":
        first_scale_quantizer = 2 + 2 * 7 * B
        assert t[first_scale_quantizer] == original.direct_scale[0, 0]


def test_archive_is_byte_identical_whatever_the_clock(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first = write_bitstream(_bitstream("official"), tmp_path / "a").read_bytes()
    # zipfile stamps members with time.localtime() unless told otherwise: move the clock.
    monkeypatch.setattr("time.localtime", lambda *args: (2031, 7, 9, 13, 14, 16, 0, 0, 0))
    monkeypatch.setattr("time.time", lambda: 1_941_000_000.0)
    second = write_bitstream(_bitstream("official"), tmp_path / "b").read_bytes()
    assert first == second
    assert write_bitstream(_bitstream("official", seed=1), tmp_path / "c").read_bytes() != first


def test_write_refuses_inconsistent_content_and_writes_nothing(tmp_path: Path) -> None:
    good = _bitstream("seed")
    bad_cases = {
        "codes shape": dict(codes=good.codes[:, :-1]),
        "codes dtype": dict(codes=good.codes.astype(np.int16)),
        "scale blocks": dict(zero_point=good.zero_point[:, :-1]),
        "unsorted keys": dict(keys=good.keys[::-1].copy()),
        "wrong C": dict(dc=good.dc[:-1], codes=good.codes[:-1], scale=good.scale[:-1],
                        zero_point=good.zero_point[:-1]),
        "official without VQ": dict(layout=LAYOUTS["official"]),
    }
    for name, changes in bad_cases.items():
        fields = {f: getattr(good, f) for f in good.__dataclass_fields__}
        fields.update(changes)
        with pytest.raises(ValueError):
            write_bitstream(BinsBitstream(**fields), tmp_path / name)
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir()), name


def test_missing_path() -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_bitstream("/nonexistent/nowhere/bins.zip")


# ---------------------------------------------------------------- corruption, one error each

def _rewrite_npz(folder: Path, name: str, **arrays: np.ndarray) -> None:
    with np.load(folder / name, allow_pickle=False) as old:
        content = {key: old[key] for key in old.files}
    content.update(arrays)
    with open(folder / name, "wb") as f:
        np.savez_compressed(f, **content)


def _edit_meta(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    (folder / "meta.json").write_text(json.dumps(meta))


def _npz_with_raw_member(member: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, payload)
    return buffer.getvalue()


def _pickled_object_array(folder: Path) -> None:
    codes = np.empty((C, N - 1), dtype=object)
    codes[:] = 1
    with open(folder / "orgb.npz", "wb") as f:
        np.savez(f, f=np.zeros(C, np.float32), i=codes)


def _inner_bomb(folder: Path) -> None:
    """orgb.npz whose i.npy has a valid header but declares 64 MiB (tiny once deflated)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (C, N - 1)})
    payload = header.getvalue() + bytes(64 * 2**20)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("f.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(C, np.float32))
        archive.writestr("i.npy", payload)
    (folder / "orgb.npz").write_bytes(buffer.getvalue())


CORRUPTIONS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "missing t.npz": (r"missing \['t\.npz'\]", lambda d: (d / "t.npz").unlink()),
    "missing meta.json": (r"meta\.json: missing", lambda d: (d / "meta.json").unlink()),
    "extra member": (r"unexpected \['extra\.npz'\]", lambda d: (d / "extra.npz").write_bytes(b"x")),
    "meta not json": (r"meta\.json: corrupt", lambda d: (d / "meta.json").write_text("{N: 3")),
    "meta unknown layout": (r"meta\.json: expected layout", lambda d: _edit_meta(d, layout="fancy")),
    "meta N disagrees": (r"oct\.npz.*int64\[65\], found int64\[64\]", lambda d: _edit_meta(d, N=N + 1)),
    "meta B disagrees": (r"t\.npz.*float64\[122\], found float64\[102\]", lambda d: _edit_meta(d, B=B + 1)),
    "meta bits disagree (dtype)": (r"orgb\.npz.*must be uint16", lambda d: _edit_meta(d, num_bits=12)),
    "codes wrong dtype": (r"orgb\.npz.*found int16", lambda d: _rewrite_npz(
        d, "orgb.npz", i=np.zeros((C, N - 1), np.int16))),
    "codes wrong shape": (r"orgb\.npz.*found uint8\[7, 62\]", lambda d: _rewrite_npz(
        d, "orgb.npz", i=np.zeros((C, N - 2), np.uint8))),
    "keys wrong dtype": (r"oct\.npz.*found int32", lambda d: _rewrite_npz(
        d, "oct.npz", points=np.arange(N, dtype=np.int32))),
    "missing key in npz": (r"orgb\.npz: expected arrays", lambda d: (d / "orgb.npz").write_bytes(
        _npz_with_raw_member("f.npy", b""))),
    "pickled object array": (r"orgb\.npz.*found object", _pickled_object_array),
    "truncated npz": (r"um\.npz: corrupt or truncated", lambda d: (d / "um.npz").write_bytes(
        (d / "um.npz").read_bytes()[:-40])),
    "garbage npz": (r"ntk\.npz: corrupt or truncated", lambda d: (d / "ntk.npz").write_bytes(b"PK\x03\x04garbage")),
    "t wrong depth": (r"t\.npz starts with depth", lambda d: _edit_meta(d, D=DEPTH + 1)),
    "unsorted keys": (r"oct\.npz: keys not strictly ascending", lambda d: _rewrite_npz(
        d, "oct.npz", points=np.arange(N, dtype=np.int64)[::-1].copy())),
    "VQ index outside codebook": (r"ntk\.npz: indices outside", lambda d: _rewrite_npz(
        d, "ntk.npz", ntk=np.full(N, 8, np.int32))),
    "inner zip bomb": (r"orgb\.npz: array 'i' declares", _inner_bomb),
    "oversized member": (r"ct\.npz: \d+ bytes declared", lambda d: (d / "ct.npz").write_bytes(bytes(10 * 2**20))),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
@pytest.mark.parametrize("container", ["folder", "zip"])
def test_corruption_is_one_clear_error(tmp_path: Path, case: str, container: str) -> None:
    message, corrupt = CORRUPTIONS[case]
    write_bitstream(_bitstream("official"), tmp_path)
    folder = tmp_path / BINS_DIR
    corrupt(folder)
    target = folder
    if container == "zip":
        target = tmp_path / "corrupt.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, path.name)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(BitstreamError, match=message):
        read_bitstream(target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_truncated_archive(tmp_path: Path) -> None:
    archive = write_bitstream(_bitstream("seed"), tmp_path)
    data = archive.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        broken = tmp_path / f"cut{cut}.zip"
        broken.write_bytes(data[:cut])
        with pytest.raises(BitstreamError, match=f"cut{cut}.zip"):
            read_bitstream(broken)


def test_outer_zip_bomb_refused_before_decompression(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A bins.zip member declaring far more than meta.json implies is never read."""
    write_bitstream(_bitstream("seed"), tmp_path)
    folder = tmp_path / BINS_DIR
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("meta.json", "oct.npz", "t.npz"):
            archive.write(folder / name, name)
        archive.writestr("orgb.npz", bytes(64 * 2**20))  # 64 MiB of zeros, ~64 KiB stored
    assert bomb.stat().st_size < 2**20
    reads: list[str] = []
    original_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read",
                        lambda self, name, *a: reads.append(name) or original_read(self, name, *a))
    with pytest.raises(BitstreamError, match=r"orgb\.npz.*declared"):
        read_bitstream(bomb)
    assert "orgb.npz" not in reads
