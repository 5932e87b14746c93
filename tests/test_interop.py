"""Other tools' splat formats: detection by content, round trips within each format's precision,
``render.py --export`` / ``--given_ply_path``, ``train.py --given_ply_path``, one-line errors.

Round trips start from the shared standard PLY (9,080 Gaussians, SH degree 3): our PLY →
``render.py --export x.<format>`` → ``render.py --given_ply_path x.<format> --export_ply`` →
compared with the original. SOG and compressed.ply store the Gaussians in Morton order, so
decoded and original Gaussians are paired by a maximum bipartite matching over the pairs that
agree within the format's bounds, and the test asserts that the matching is perfect: every
Gaussian has its own partner within every bound.

Bounds are absolute, per value; each also allows one float32 ulp of the value (the tool computes
in double precision and stores float32). Notation: x position, α = sigmoid(opacity logit),
s log-scale, c f_dc, r f_rest, q the unit quaternion (sign-aligned, bound per component).
Facts from the nianticlabs/spz format description and from the readers and writers of
@playcanvas/splat-transform 3.7.0 (dist/cli.mjs), which the project runs.

- SPZ (version 4 by default; the official encoder with 5 bits for SH degree 1 and 4 bits for
  degrees 2-3): x is 24-bit fixed point with f fractional bits (header byte 13), |Δx| ≤ 2^-(f+1);
  s is uint8 (s + 10)·16, |Δs| ≤ 1/32 on [-10, 5.9375] (clamped outside); α uint8, ≤ 0.5/255;
  c uint8 of 0.15·c + 0.5, ≤ 0.5/(255·0.15) on ±0.5/0.15 (clamped); r is round(128 r) + 128
  rounded to a multiple of 8 (degree 1) or 16 (degrees 2-3), ≤ 4.5/128 and 8.5/128 on
  [-1, 127/128] (clamped); q "smallest three" with 9-bit magnitudes on [0, 1/√2]: the stored
  components are within δ = 1/(2·511·√2), the rebuilt largest one within
  3δ(√2 + δ)/(1 - 4.5δ) < 4.5δ, so every component within 4.5 δ.
- PlayCanvas compressed.ply: chunks of 256 Gaussians in file order; x and s lie between the
  chunk's min and max with 11/10/11 bits, |Δ| ≤ (max - min)/(2(2^b - 1)); the colour 0.5 + C0·c
  between the chunk's min and max with 8 bits, |Δc| ≤ (max - min)/(2·255·C0); α uint8,
  ≤ 0.5/255; q smallest three with 10 bits on [-1/√2, 1/√2], δ = √2/(2·1023), all ≤ 4.5 δ; r is
  truncated to 8 bits on [-4, 4] and decoded at the bin centre, ≤ 1/64.
- SOG (version 2): x is l = sign(x)·ln(|x| + 1) truncated to 16 bits between meta.json's
  means.mins and means.maxs, |Δl| ≤ (max - min)/65535, hence |Δx| ≤ (|x̂| + 1)·Δl·e^Δl; q
  smallest three scaled by √2, truncated to 8 bits, δ = 2/(255·√2), all ≤ 4.5 δ; α truncated to
  8 bits, ≤ 1/255; s and c are indices into 256-entry codebooks (meta.json): each decoded value
  is the codebook entry nearest to the original; r is a k-means palette of whole SH vectors
  whose values come from a 256-entry codebook: no per-value bound exists, so every decoded value
  must be a codebook entry and the RMS error must stay under a tenth of the RMS of r (the
  palette has min(64, 2^⌊log2(N/1024)⌋)·1024 = 8,192 entries for these 9,080 Gaussians).
- .splat (antimatter15 32-byte records, written by this test): float32 x and linear scales
  (|Δs| ≤ 1e-6 after exp/log); colour and α uint8, |Δc| ≤ 0.5/(255·C0) on colours in [0, 1],
  ≤ 0.5/255; q uint8 (q + 1)·127.5 per component, ≤ 0.5/127.5 before the reader renormalises,
  all ≤ 4·(0.5/127.5) after; no SH.
- .ksplat (GaussianSplats3D, compression level 0, written by this test): float32 x, scales and
  raw quaternions; colour and α uint8 as in .splat.
"""
from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
from plyfile import PlyData
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

import render as render_cli
import train as train_cli
from scene.formats import detect_format, export_format, ply_elements, ply_vertex_count
from scene.interop import standard_ply
from scene.ply import MAX_OPACITY_LOGIT, read_ply, write_ply
from utils.splat_transform import (ENV_VAR, SplatTransformUnavailable, run_splat_transform,
                                   splat_transform_available, splat_transform_executable)

REPO = Path(__file__).resolve().parents[1]
C0 = 0.28209479177387814
needs_tool = pytest.mark.skipif(not splat_transform_available(),
                                reason="splat-transform needs Node.js and npm (not found)")


# ------------------------------------------------------------------------------ helpers

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _unit(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _rotation_error(q_original: np.ndarray, q_decoded: np.ndarray) -> np.ndarray:
    """Largest component difference of the sign-aligned unit quaternions, per row."""
    a, b = _unit(q_original), _unit(q_decoded)
    sign = np.where((a * b).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    return np.abs(a - sign * b).max(-1)


@dataclass
class Precision:
    """Per-value bounds of a format; arrays broadcast against the decoded rows, None: no
    per-value bound (checked on its own after the pairing)."""

    xyz: np.ndarray | float                   # [N, 3] or scalar
    opacity: float                            # activated
    rotation: float                           # per component of the unit quaternion
    log_scale: Optional[np.ndarray | float] = None
    f_dc: Optional[np.ndarray | float] = None
    f_rest: Optional[np.ndarray | float] = None   # [K-1, 1] per coefficient, or scalar
    log_scale_range: tuple[float, float] = (-np.inf, np.inf)
    f_dc_range: tuple[float, float] = (-np.inf, np.inf)
    f_rest_range: tuple[float, float] = (-np.inf, np.inf)


def _within(original: np.ndarray, decoded: np.ndarray, bound: np.ndarray | float,
            value_range: tuple[float, float]) -> np.ndarray:
    """Rows whose every value is within ``bound`` of the clamped original, plus one float32 ulp
    of the value and 0.01 % of the bound (encoders that compute in float32)."""
    error = np.abs(np.clip(original, *value_range).astype(np.float64) - decoded)
    ulp = np.spacing(np.abs(decoded).astype(np.float32)).astype(np.float64)
    ok = error <= np.asarray(bound, np.float64) * (1 + 1e-4) + ulp + 1e-7
    return ok.reshape(len(ok), -1).all(axis=1)


def _pair(original: dict[str, np.ndarray], decoded: dict[str, np.ndarray],
          precision: Precision) -> np.ndarray:
    """Original index of each decoded Gaussian under a perfect matching within ``precision``.

    Candidates are the originals within the position bound (k-d tree, L∞ ball); a pair is kept
    when every attribute with a per-value bound agrees; the maximum bipartite matching must
    then pair every decoded Gaussian with a distinct original.
    """
    n = len(decoded["xyz"])
    assert len(original["xyz"]) == n, "the round trip changed the number of Gaussians"

    def per_row(bound: np.ndarray | float, rows: np.ndarray) -> np.ndarray | float:
        """A bound given per decoded Gaussian ([N, ...]) taken at ``rows``; else as it is."""
        return np.asarray(bound)[rows] if np.ndim(bound) and len(bound) == n else bound

    xyz_bound = np.broadcast_to(np.asarray(precision.xyz, np.float64), (n, 3))
    checks: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "xyz": lambda r, c: _within(original["xyz"][c], decoded["xyz"][r], xyz_bound[r],
                                    (-np.inf, np.inf)),
        "opacity": lambda r, c: np.abs(_sigmoid(original["opacity"][c, 0])
                                       - _sigmoid(decoded["opacity"][r, 0]))
        <= precision.opacity + 1e-6,
        "rotation": lambda r, c: _rotation_error(original["rotation"][c], decoded["rotation"][r])
        <= precision.rotation + 1e-6}
    for key, bound, value_range in (("scaling", precision.log_scale, precision.log_scale_range),
                                    ("f_dc", precision.f_dc, precision.f_dc_range),
                                    ("f_rest", precision.f_rest, precision.f_rest_range)):
        if bound is not None:
            checks[key] = lambda r, c, k=key, b=bound, v=value_range: _within(
                original[k][c], decoded[k][r], per_row(b, r), v)

    radius = xyz_bound.max(axis=1) * (1 + 1e-4) + np.spacing(
        np.abs(decoded["xyz"]).max(axis=1)) + 1e-6
    candidates = cKDTree(original["xyz"]).query_ball_point(decoded["xyz"], r=radius, p=np.inf)
    rows = np.repeat(np.arange(n), [len(c) for c in candidates])
    cols = np.concatenate([np.asarray(c, np.int64) for c in candidates])
    keep = np.ones(len(rows), bool)
    for check in checks.values():
        keep &= check(rows, cols)
    graph = csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n))
    match = maximum_bipartite_matching(graph, perm_type="column")
    unmatched = np.flatnonzero(match < 0)
    if len(unmatched):  # say which bound the nearest original breaks for the first one
        i = unmatched[:1]
        nearest = cKDTree(original["xyz"]).query(decoded["xyz"][i])[1]
        failed = [name for name, check in checks.items() if not check(i, nearest)[0]]
        pytest.fail(f"{len(unmatched)} of {n} decoded Gaussians have no partner within the "
                    f"format's bounds; decoded #{i[0]} vs the nearest original "
                    f"#{nearest[0]} breaks {failed}")
    return match


def _write_splat(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """antimatter15 .splat: float32 xyz, float32 linear scales, uint8 RGBA, uint8 wxyz."""
    record = np.dtype([("xyz", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4),
                       ("rot", "u1", 4)])
    rows = np.zeros(len(arrays["xyz"]), record)
    rows["xyz"] = arrays["xyz"]
    rows["scale"] = np.exp(arrays["scaling"])
    rows["rgba"][:, :3] = np.clip(np.round((0.5 + C0 * arrays["f_dc"][:, 0]) * 255), 0, 255)
    rows["rgba"][:, 3] = np.round(_sigmoid(arrays["opacity"][:, 0]) * 255)
    rows["rot"] = np.clip(np.round((_unit(arrays["rotation"]) + 1.0) * 127.5), 0, 255)
    path.write_bytes(rows.tobytes())
    return path


def _write_ksplat(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """GaussianSplats3D .ksplat, version 0.1, compression level 0, one section, one bucket."""
    n = len(arrays["xyz"])
    main = bytearray(4096)
    main[0:2] = bytes([0, 1])
    struct.pack_into("<4I", main, 4, 1, 1, n, n)         # max/sections, max/splat count
    struct.pack_into("<H", main, 20, 0)                  # compression level
    section = bytearray(1024)
    struct.pack_into("<4If", section, 0, n, n, n, 1, 5.0)  # splats, max, capacity, buckets, size
    struct.pack_into("<H", section, 20, 12)               # bytes per bucket (its centre)
    struct.pack_into("<4IH", section, 24, 1, 0, 1, 0, 0)  # range, storage, full/partial, SH 0
    record = np.dtype([("xyz", "<f4", 3), ("scale", "<f4", 3), ("rot", "<f4", 4),
                       ("rgba", "u1", 4)])
    rows = np.zeros(n, record)
    rows["xyz"], rows["scale"] = arrays["xyz"], np.exp(arrays["scaling"])
    rows["rot"] = arrays["rotation"]
    rows["rgba"][:, :3] = np.clip(np.round((0.5 + C0 * arrays["f_dc"][:, 0]) * 255), 0, 255)
    rows["rgba"][:, 3] = np.round(_sigmoid(arrays["opacity"][:, 0]) * 255)
    bucket_centre = np.zeros(3, "<f4").tobytes()
    path.write_bytes(bytes(main) + bytes(section) + bucket_centre + rows.tobytes())
    return path


def _run(*args: str, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore",
                                            **(env or {})})


def _one_error_line(result: subprocess.CompletedProcess, program: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), lines
    return lines[0]


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def shared_ply(shared_data: Path) -> Path:
    return shared_data / "pretrained_ply" / "small_3dgs_sh3.ply"


@pytest.fixture(scope="module")
def original(shared_ply: Path) -> dict[str, np.ndarray]:
    return read_ply(shared_ply)


@pytest.fixture(scope="module")
def round_trips(shared_ply: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    """format → (exported file, Gaussians read back), both ways through render.py."""
    if not splat_transform_available():
        pytest.skip("splat-transform needs Node.js and npm (not found)")
    out = tmp_path_factory.mktemp("interop")
    done = {}
    for fmt in ("spz", "sog", "compressed.ply"):
        exported = out / f"model.{fmt}"
        back = out / f"back_{fmt}.ply"
        assert render_cli.main(["--given_ply_path", str(shared_ply), "--export", str(exported),
                                "--quiet"]) == []
        render_cli.main(["--given_ply_path", str(exported), "--export_ply", str(back),
                         "--quiet"])
        done[fmt] = exported, read_ply(back)
    return done


# ------------------------------------------------------------------------------ detection

def test_formats_are_told_apart_by_content(tmp_path: Path, shared_ply: Path) -> None:
    misnamed = tmp_path / "model.bin"
    misnamed.write_bytes(shared_ply.read_bytes())
    assert detect_format(misnamed) == "ply"
    (tmp_path / "c.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement chunk 1\n"
                                     b"property float min_x\nelement vertex 256\n"
                                     b"property uint packed_position\nend_header\n")
    assert detect_format(tmp_path / "c.ply") == "compressed_ply"
    assert ply_elements(tmp_path / "c.ply") == {"chunk": 1, "vertex": 256}
    assert ply_vertex_count(misnamed) == len(PlyData.read(str(shared_ply))["vertex"])
    (tmp_path / "v4.bin").write_bytes(b"NGSP" + bytes(28))
    assert detect_format(tmp_path / "v4.bin") == "spz"
    (tmp_path / "v3.bin").write_bytes(gzip.compress(b"NGSP" + bytes(12)))
    assert detect_format(tmp_path / "v3.bin") == "spz"
    (tmp_path / "model.gscf").write_bytes(b"GSCF\x01" + bytes(16))
    assert detect_format(tmp_path / "model.gscf") == "compact"
    with zipfile.ZipFile(tmp_path / "scene.zip", "w") as archive:
        archive.writestr("meta.json", "{}")
        archive.writestr("means_l.webp", b"RIFF")
    assert detect_format(tmp_path / "scene.zip") == "sog"
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        archive.writestr("meta.json", "{}")
        archive.writestr("oct.npz", b"")
    assert detect_format(tmp_path / "b.zip") == "bins"
    assert detect_format(tmp_path) == "bins"
    assert [export_format(name) for name in ("a.ply", "a.compressed.ply", "a.SPZ", "a.sog",
                                             "a.html")] == ["ply", "compressed_ply", "spz",
                                                            "sog", "html"]


def test_unrecognised_and_inconsistent_files_are_refused(tmp_path: Path,
                                                         original: dict[str, np.ndarray]
                                                         ) -> None:
    cases = {
        "other.zip": (lambda p: zipfile.ZipFile(p, "w").close(), "neither a bins.zip"),
        "not_spz.spz": (lambda p: p.write_bytes(gzip.compress(b"hello")), "not a model file"),
        "header.ply": (lambda p: p.write_bytes(b"ply\nformat ascii 1.0\n"), "end_header"),
        "count.ply": (lambda p: p.write_bytes(b"ply\nelement vertex many\nend_header\n"),
                      "count.ply: PLY header line 'element vertex many' has no element count"),
        "odd.splat": (lambda p: p.write_bytes(bytes(33)), "32-byte .splat records"),
        "empty.splat": (lambda p: p.write_bytes(b""), "32-byte .splat records"),
        "short.ksplat": (lambda p: p.write_bytes(bytes(100)), "4096-byte"),
        "model.xyz": (lambda p: p.write_bytes(b"x y z\n"), "not a model file"),
    }
    for name, (write, message) in cases.items():
        write(tmp_path / name)
        with pytest.raises(ValueError, match=message):
            detect_format(tmp_path / name)
    whole = _write_ksplat(tmp_path / "whole.ksplat", {k: v[:10] for k, v in original.items()})
    assert detect_format(whole) == "ksplat"
    for name, data in (("cut.ksplat", whole.read_bytes()[:-1]),
                       ("long.ksplat", whole.read_bytes() + b"\0")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="headers describe"):
            detect_format(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "missing.spz")
    (tmp_path / "chunks.ply").write_bytes(b"ply\nelement chunk 2\nend_header\n")
    with pytest.raises(ValueError, match="chunks.ply: PLY header without an 'element vertex'"):
        ply_vertex_count(tmp_path / "chunks.ply")
    with pytest.raises(ValueError, match="model.xyz: not a PLY file"):
        ply_vertex_count(tmp_path / "model.xyz")
    with pytest.raises(ValueError, match="output format"):
        export_format("model.splat")


# ------------------------------------------------------------------------------ round trips

@pytest.mark.slow
@needs_tool
def test_spz_round_trip_within_its_precision(round_trips: dict, original: dict) -> None:
    exported, decoded = round_trips["spz"]
    header = exported.read_bytes()[:16]
    assert header[:4] == b"NGSP" and struct.unpack_from("<I", header, 4)[0] == 4
    fractional_bits = header[13]
    delta = 1.0 / (2 * 511 * np.sqrt(2))
    rest_bits = np.array([4.5] * 3 + [8.5] * 12)[:, None] / 128  # degree 1, then 2-3
    match = _pair(original, decoded, Precision(
        xyz=2.0 ** -(fractional_bits + 1), opacity=0.5 / 255, rotation=4.5 * delta,
        log_scale=1 / 32, log_scale_range=(-10.0, 5.9375),
        f_dc=0.5 / (255 * 0.15), f_dc_range=(-0.5 / 0.15, 0.5 / 0.15),
        f_rest=rest_bits, f_rest_range=(-1.0, 127 / 128)))
    assert np.array_equal(match, np.arange(len(match)))  # SPZ keeps the order


@pytest.mark.slow
@needs_tool
def test_compressed_ply_round_trip_within_its_chunk_ranges(round_trips: dict,
                                                           original: dict) -> None:
    exported, decoded = round_trips["compressed.ply"]
    chunks = PlyData.read(str(exported))["chunk"].data
    chunk = np.arange(len(decoded["xyz"])) // 256          # decoded rows keep the file order
    bits = (2.0 ** np.array([11, 10, 11]) - 1)

    def half_step(low: tuple[str, ...], high: tuple[str, ...], levels: np.ndarray) -> np.ndarray:
        return np.stack([chunks[h][chunk] - chunks[lo][chunk] for lo, h in zip(low, high)],
                        axis=1).astype(np.float64) / (2 * levels)

    _pair(original, decoded, Precision(
        xyz=half_step(("min_x", "min_y", "min_z"), ("max_x", "max_y", "max_z"), bits),
        opacity=0.5 / 255, rotation=4.5 * np.sqrt(2) / (2 * 1023),
        log_scale=half_step(("min_scale_x", "min_scale_y", "min_scale_z"),
                            ("max_scale_x", "max_scale_y", "max_scale_z"), bits),
        f_dc=(half_step(("min_r", "min_g", "min_b"), ("max_r", "max_g", "max_b"),
                        np.full(3, 255.0)) / C0)[:, None, :],
        f_rest=1 / 64, f_rest_range=(-4.0 + 1 / 32, 4.0 - 1 / 32)))


@pytest.mark.slow
@needs_tool
def test_sog_round_trip_within_its_codebooks(round_trips: dict, original: dict) -> None:
    exported, decoded = round_trips["sog"]
    meta = json.loads(zipfile.ZipFile(exported).read("meta.json"))
    assert meta["version"] == 2 and meta["count"] == len(original["xyz"])
    step = (np.array(meta["means"]["maxs"]) - np.array(meta["means"]["mins"])) / 65535
    match = _pair(original, decoded, Precision(
        xyz=(np.abs(decoded["xyz"]).astype(np.float64) + 1) * step * np.exp(step),
        opacity=1 / 255, rotation=4.5 * 2 / (255 * np.sqrt(2))))
    paired = {key: value[match] for key, value in original.items()}
    for key, book in (("scaling", meta["scales"]["codebook"]), ("f_dc", meta["sh0"]["codebook"])):
        codebook = np.asarray(book, np.float32)
        assert np.isin(decoded[key], codebook).all(), key
        nearest = np.abs(paired[key][..., None] - codebook).min(-1)
        assert np.all(np.abs(paired[key] - decoded[key]) <= nearest + 1e-6), key
    assert np.isin(decoded["f_rest"], np.asarray(meta["shN"]["codebook"], np.float32)).all()
    rms = lambda a: float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))  # noqa: E731
    assert rms(paired["f_rest"] - decoded["f_rest"]) < 0.1 * rms(paired["f_rest"])


@needs_tool
def test_splat_and_ksplat_are_read_within_their_precision(original: dict, tmp_path: Path
                                                          ) -> None:
    colour_range = ((0 - 0.5) / C0, (1 - 0.5) / C0)
    for name, writer, rotation in (("model.splat", _write_splat, 4 * 0.5 / 127.5),
                                   ("model.ksplat", _write_ksplat, 1e-6)):
        source = writer(tmp_path / name, original)
        back = tmp_path / f"{name}.ply"
        render_cli.main(["--given_ply_path", str(source), "--export_ply", str(back), "--quiet"])
        decoded = read_ply(back)
        assert not decoded["f_rest"].any()  # neither holds SH: the model pads zeros
        match = _pair(original, decoded, Precision(
            xyz=0.0, opacity=0.5 / 255, rotation=rotation, log_scale=1e-6,
            f_dc=0.5 / (255 * C0), f_dc_range=colour_range))
        assert np.array_equal(match, np.arange(len(match)))


@needs_tool
def test_legacy_gzip_spz_is_read(original: dict, tmp_path: Path, shared_ply: Path) -> None:
    legacy = tmp_path / "v3.spz"
    run_splat_transform(["-w", "-q", "--spz-version", "3", shared_ply, legacy], subject=legacy)
    assert legacy.read_bytes()[:2] == b"\x1f\x8b" and detect_format(legacy) == "spz"
    with standard_ply(legacy) as ply:
        decoded = read_ply(ply)
    assert np.abs(decoded["xyz"] - original["xyz"]).max() <= 2.0 ** -13 + 1e-6


# ------------------------------------------------------------------------------ command lines

@needs_tool
def test_train_compresses_an_spz_like_its_ply(original: dict, tmp_path: Path) -> None:
    """train.py --given_ply_path model.spz gives the bitstream of the PLY the tool reads."""
    subset = write_ply(tmp_path / "subset.ply", {k: v[:1500] for k, v in original.items()})
    spz = tmp_path / "subset.spz"
    render_cli.main(["--given_ply_path", str(subset), "--export", str(spz), "--quiet"])
    as_ply = tmp_path / "subset_from_spz.ply"
    with standard_ply(spz) as ply:
        as_ply.write_bytes(ply.read_bytes())
    common = ["--quiet", "--n_block", "8", "--depth", "12", "--backend", "torch"]
    for given, model in ((spz, "from_spz"), (as_ply, "from_ply")):
        train_cli.main(["--given_ply_path", str(given), "-m", str(tmp_path / model), *common])
    zips = [(tmp_path / m / "compression" / "seed" / "iteration_0" / "bins.zip").read_bytes()
            for m in ("from_spz", "from_ply")]
    assert zips[0] == zips[1]
    report = json.loads((tmp_path / "from_spz" / "compression" / "seed" / "iteration_0"
                         / "report.json").read_text())
    assert 0 < report["num_gaussians"] <= 1500


@pytest.mark.slow
def test_missing_node_is_one_error_line(tmp_path: Path) -> None:
    spz = tmp_path / "model.spz"
    spz.write_bytes(b"NGSP" + bytes(28))
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR} | {"PATH": str(empty_path)}
    result = subprocess.run([sys.executable, "render.py", "--given_ply_path", str(spz),
                             "--export_ply", str(tmp_path / "out.ply")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    line = _one_error_line(result, "render.py")
    assert "Node.js" in line and "apt-get install nodejs npm" in line
    assert not (tmp_path / "out.ply").exists()


def test_splat_transform_env_must_name_a_file(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        splat_transform_executable()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(SplatTransformUnavailable, match="Node.js"):
        splat_transform_executable()


def test_first_use_installs_the_pinned_tool_atomically(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    """With node and npm (stand-ins here) but no tool, npm installs the pinned package into
    the project folder, through a temporary folder that a failed install leaves no trace of."""
    import utils.splat_transform as tool

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"node": "exit 0\n",
               "npm": 'prefix="$3"; echo "$@" > "$prefix/../npm_args"\n'
                      '[ -n "$FAIL" ] && { echo "npm error code E404" >&2; exit 1; }\n'
                      'mkdir -p "$prefix/node_modules/.bin"\n'
                      'touch "$prefix/node_modules/.bin/splat-transform"\n'}
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv(ENV_VAR, raising=False)
    install_dir = tmp_path / ".tools" / "splat-transform"
    monkeypatch.setattr(tool, "TOOLS_DIR", install_dir.parent)
    monkeypatch.setattr(tool, "INSTALL_DIR", install_dir)
    monkeypatch.setattr(tool, "INSTALLED_EXECUTABLE",
                        install_dir / "node_modules" / ".bin" / "splat-transform")
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(ValueError, match="npm install of @playcanvas/splat-transform@3.7.0 "
                                         "failed: npm error code E404"):
        tool.splat_transform_executable()
    assert not install_dir.exists()
    monkeypatch.delenv("FAIL")
    assert tool.splat_transform_executable() == tool.INSTALLED_EXECUTABLE
    args = (install_dir.parent / "npm_args").read_text().split()
    assert args[:2] == ["install", "--prefix"] and args[-1] == "@playcanvas/splat-transform@3.7.0"
    assert tool.splat_transform_executable(install=False) == tool.INSTALLED_EXECUTABLE


@pytest.mark.slow
@needs_tool
def test_bad_inputs_give_one_line_and_no_output(tmp_path: Path, shared_ply: Path) -> None:
    broken = tmp_path / "broken.spz"
    broken.write_bytes(b"NGSP" + struct.pack("<I", 4) + bytes(200))
    out = tmp_path / "out.ply"
    line = _one_error_line(_run("render.py", "--given_ply_path", str(broken), "--export_ply",
                                str(out), "--quiet"), "render.py")
    assert str(broken) in line and "splat-transform failed" in line
    odd = tmp_path / "odd.splat"
    odd.write_bytes(bytes(31))
    line = _one_error_line(_run("train.py", "--given_ply_path", str(odd), "-m",
                                str(tmp_path / "m"), "--quiet"), "train.py")
    assert str(odd) in line and "32-byte" in line
    compact = tmp_path / "model.gscf"
    compact.write_bytes(b"GSCF\x01" + bytes(64))
    line = _one_error_line(_run("render.py", "--given_ply_path", str(compact), "--export",
                                str(tmp_path / "out.spz"), "--quiet"), "render.py")
    assert "compact" in line
    line = _one_error_line(_run("render.py", "--given_ply_path", str(shared_ply), "--export",
                                str(tmp_path / "out.splat"), "--quiet"), "render.py")
    assert "output format" in line
    sh3 = tmp_path / "sh3.spz"
    render_cli.main(["--given_ply_path", str(shared_ply), "--export", str(sh3), "--quiet"])
    line = _one_error_line(_run("render.py", "--given_ply_path", str(sh3), "--sh_degree", "1",
                                "--export_ply", str(out), "--quiet"), "render.py")
    assert line.startswith(f"render.py: error: {sh3} ") and "sh_degree 1" in line  # not a temp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.spz", "model.gscf",
                                                          "odd.splat", "sh3.spz"]


@needs_tool
@pytest.mark.slow
def test_warnings_about_a_converted_file_name_the_users_file(tmp_path: Path,
                                                             original: dict) -> None:
    """A PlayCanvas compressed.ply stores opacity 0 and 1 as they are, so the PLY
    splat-transform converts it to holds infinite logits: render.py's warning names the
    user's file, not the temporary PLY."""
    arrays = {key: value[:300].copy() for key, value in original.items()}
    arrays["opacity"][:7], arrays["opacity"][7:10] = 30.0, -30.0
    ply = write_ply(tmp_path / "saturated.ply", arrays)
    user = tmp_path / "user.compressed.ply"
    assert render_cli.main(["--given_ply_path", str(ply), "--export", str(user),
                            "--quiet"]) == []
    result = _run("render.py", "--given_ply_path", str(user), "--export_ply",
                  str(tmp_path / "back.ply"), "--quiet")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "infinite opacity" in line]
    assert warnings == [f"{user} (as the PLY splat-transform converts it to): 10 infinite "
                        f"opacity logit(s) (opacity 0 or 1) clamped to ±{MAX_OPACITY_LOGIT:.6f}"], \
        result.stderr
