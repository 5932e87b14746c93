"""scene/ply.py: bit-exact round trip of a real 3DGS PLY, lower SH degrees, refusals."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from scene.interop import standard_ply
from training.compress import load_model_file
from scene.ply import MAX_OPACITY_LOGIT, field_names, read_ply, write_ply
from utils.general_utils import inverse_sigmoid
from utils.splat_transform import convert, splat_transform_available


@pytest.fixture(scope="module")
def pretrained_ply(shared_data: Path) -> Path:
    return shared_data / "pretrained_ply" / "small_3dgs_sh3.ply"


@pytest.fixture(scope="module")
def raw_vertex(pretrained_ply: Path) -> np.ndarray:
    """The file's vertex table as plyfile reads it (structured, 62 float32 fields)."""
    return PlyData.read(str(pretrained_ply))["vertex"].data


def _write_fields(path: Path, columns: dict[str, np.ndarray]) -> Path:
    """Write a PLY with exactly these float32 vertex fields, in this order (plyfile only)."""
    n = len(next(iter(columns.values())))
    table = np.empty(n, dtype=[(name, "<f4") for name in columns])
    for name, values in columns.items():
        table[name] = values
    PlyData([PlyElement.describe(table, "vertex")], byte_order="<").write(str(path))
    return path


def _subset(raw: np.ndarray, degree: int, normals: bool) -> dict[str, np.ndarray]:
    """Fields of a degree-``degree`` file cut out of the degree-3 table (per channel)."""
    k_file, k_new = 15, (degree + 1) ** 2 - 1
    out = {n: raw[n] for n in ("x", "y", "z")}
    if normals:
        out.update({n: raw[n] for n in ("nx", "ny", "nz")})
    out.update({f"f_dc_{c}": raw[f"f_dc_{c}"] for c in range(3)})
    out.update({f"f_rest_{c * k_new + k}": raw[f"f_rest_{c * k_file + k}"]
                for c in range(3) for k in range(k_new)})
    out.update({n: raw[n] for n in ("opacity", "scale_0", "scale_1", "scale_2",
                                    "rot_0", "rot_1", "rot_2", "rot_3")})
    return out


def test_round_trip_is_bit_exact(pretrained_ply: Path, raw_vertex: np.ndarray, tmp_path: Path):
    out = write_ply(tmp_path / "out.ply", read_ply(pretrained_ply))
    written = PlyData.read(str(out))["vertex"].data
    assert written.dtype.names == raw_vertex.dtype.names and len(raw_vertex.dtype.names) == 62
    for name in raw_vertex.dtype.names:
        np.testing.assert_array_equal(written[name].view(np.uint32), raw_vertex[name].view(np.uint32),
                                      err_msg=name)
    assert out.read_bytes() == pretrained_ply.read_bytes()


def test_layout_is_channel_major(pretrained_ply: Path, raw_vertex: np.ndarray):
    arrays = read_ply(pretrained_ply)
    assert arrays["f_rest"].shape == (len(raw_vertex), 15, 3)
    for c in range(3):
        for k in range(15):
            np.testing.assert_array_equal(arrays["f_rest"][:, k, c], raw_vertex[f"f_rest_{c * 15 + k}"])
    np.testing.assert_array_equal(arrays["rotation"][:, 0], raw_vertex["rot_0"])
    np.testing.assert_array_equal(arrays["opacity"][:, 0], raw_vertex["opacity"])


@pytest.mark.parametrize("degree", [0, 1, 2])
@pytest.mark.parametrize("normals", [True, False])
def test_lower_degree_files_load(raw_vertex: np.ndarray, tmp_path: Path, degree: int, normals: bool):
    full = {"f_rest": np.stack([np.stack([raw_vertex[f"f_rest_{c * 15 + k}"] for c in range(3)], 1)
                                for k in range(15)], 1)}
    path = _write_fields(tmp_path / "low.ply", _subset(raw_vertex, degree, normals))
    arrays = read_ply(path)
    k_new = (degree + 1) ** 2 - 1
    assert arrays["f_rest"].shape == (len(raw_vertex), k_new, 3)
    np.testing.assert_array_equal(arrays["f_rest"], full["f_rest"][:, :k_new])
    np.testing.assert_array_equal(arrays["normals"], np.zeros((len(raw_vertex), 3), np.float32))
    # Writing it back gives the same layout, byte for byte, when normals were present.
    again = write_ply(tmp_path / "again.ply", arrays)
    assert [p.name for p in PlyData.read(str(again))["vertex"].properties] == \
        [n for cols in field_names(degree).values() for n in cols]
    if normals:
        assert again.read_bytes() == path.read_bytes()


def _expect_refusal(path: Path, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        read_ply(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_truncated_file_is_refused(pretrained_ply: Path, tmp_path: Path):
    data = pretrained_ply.read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 600):  # inside the body, mid-way, inside the header
        path = tmp_path / f"cut{cut}.ply"
        path.write_bytes(data[:cut])
        _expect_refusal(path, "not a readable PLY")


def test_not_a_ply_is_refused(tmp_path: Path):
    path = tmp_path / "text.ply"
    path.write_text("hello\n")
    _expect_refusal(path, "not a readable PLY")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(raw_vertex: np.ndarray, tmp_path: Path, bad: float):
    columns = {n: raw_vertex[n].copy() for n in raw_vertex.dtype.names}
    columns["scale_1"][17] = bad
    _expect_refusal(_write_fields(tmp_path / "nan.ply", columns), "scale_1")


@pytest.mark.parametrize("bad", [{17: np.nan}, {17: np.nan, 18: np.inf}])
def test_nan_opacity_is_refused(raw_vertex: np.ndarray, tmp_path: Path, bad: dict[int, float]):
    columns = {n: raw_vertex[n].copy() for n in raw_vertex.dtype.names}
    for row, value in bad.items():
        columns["opacity"][row] = value
    _expect_refusal(_write_fields(tmp_path / "nan_opacity.ply", columns), "opacity")


def _ply_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "scene.ply"]


def test_infinite_opacity_logits_are_clamped(raw_vertex: np.ndarray, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture):
    columns = {n: raw_vertex[n].copy() for n in raw_vertex.dtype.names}
    columns["opacity"][[3, 50, 51]] = np.inf
    columns["opacity"][7] = -np.inf
    path = _write_fields(tmp_path / "saturated.ply", columns)
    with caplog.at_level(logging.WARNING, logger="scene.ply"):
        opacity = read_ply(path)["opacity"][:, 0]
    assert _ply_warnings(caplog) == [f"{path}: 4 infinite opacity logit(s) (opacity 0 or 1) "
                                     f"clamped to ±{MAX_OPACITY_LOGIT:.6f}"]
    np.testing.assert_array_equal(opacity[[3, 50, 51, 7]], [MAX_OPACITY_LOGIT] * 3 + [-MAX_OPACITY_LOGIT])
    untouched = np.ones(len(opacity), bool)
    untouched[[3, 7, 50, 51]] = False
    np.testing.assert_array_equal(opacity[untouched], raw_vertex["opacity"][untouched])


def test_clamp_value_is_the_largest_round_trip_logit():
    """±MAX_OPACITY_LOGIT survive float32 sigmoid → logit exactly, the next float32 does not."""
    logits = torch.tensor([MAX_OPACITY_LOGIT, -MAX_OPACITY_LOGIT])
    opacities = torch.sigmoid(logits)
    assert opacities[0] < 1 and opacities[1] > 0
    assert torch.equal(inverse_sigmoid(opacities), logits)
    beyond = torch.nextafter(logits[:1], torch.tensor([100.0]))
    assert torch.sigmoid(beyond) == 1 or inverse_sigmoid(torch.sigmoid(beyond)) != beyond


@pytest.mark.skipif(not splat_transform_available(),
                    reason="splat-transform needs Node.js and npm (not found)")
def test_playcanvas_compressed_ply_loads_through_interop(pretrained_ply: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture):
    """compressed.ply stores opacity on 8 bits: 0.99966 and 0.00034 come back as exactly 1 and
    0, which splat-transform writes as logits +inf and -inf in the standard PLY that
    ``scene.interop.standard_ply`` converts it to; reading that PLY clamps them, and the
    warning names the user's file, not the temporary PLY (as ``render.py --given_ply_path``
    reads it, through ``load_model_file``)."""
    arrays = read_ply(pretrained_ply)
    arrays["opacity"][:300] = 8.0
    arrays["opacity"][300:500] = -8.0
    saturated = write_ply(tmp_path / "saturated.ply", arrays)
    compressed = convert(saturated, tmp_path / "saturated.compressed.ply")
    with standard_ply(compressed) as decoded:
        raw_opacity = PlyData.read(str(decoded))["vertex"].data["opacity"]
        with caplog.at_level(logging.WARNING, logger="scene.ply"):
            opacity = read_ply(decoded)["opacity"][:, 0]
    assert (np.isposinf(raw_opacity).sum(), np.isneginf(raw_opacity).sum()) == (300, 200)
    expected = (f"{compressed} (as the PLY splat-transform converts it to): 500 infinite "
                f"opacity logit(s) (opacity 0 or 1) clamped to ±{MAX_OPACITY_LOGIT:.6f}")
    assert _ply_warnings(caplog) == [expected]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scene.ply"):
        model = load_model_file(compressed, 3, "cpu")
    assert _ply_warnings(caplog) == [expected] and model.num_gaussians == len(opacity)
    with caplog.at_level(logging.WARNING, logger="scene.ply"):  # outside the block: as it is
        read_ply(saturated)
        caplog.clear()
        arrays["opacity"][:2] = np.inf
        read_ply(write_ply(tmp_path / "infinite.ply", arrays))
    assert _ply_warnings(caplog) == [f"{tmp_path / 'infinite.ply'}: 2 infinite opacity logit(s) "
                                     f"(opacity 0 or 1) clamped to ±{MAX_OPACITY_LOGIT:.6f}"]
    np.testing.assert_array_equal(opacity[np.isposinf(raw_opacity)], MAX_OPACITY_LOGIT)
    np.testing.assert_array_equal(opacity[np.isneginf(raw_opacity)], -MAX_OPACITY_LOGIT)
    assert np.isfinite(opacity).all()


def test_missing_field_is_refused(raw_vertex: np.ndarray, tmp_path: Path):
    columns = {n: raw_vertex[n] for n in raw_vertex.dtype.names if n != "rot_2"}
    _expect_refusal(_write_fields(tmp_path / "norot.ply", columns), "missing PLY field(s) rot_2")


def test_bad_f_rest_count_is_refused(raw_vertex: np.ndarray, tmp_path: Path):
    columns = {n: raw_vertex[n] for n in raw_vertex.dtype.names if n != "f_rest_44"}
    _expect_refusal(_write_fields(tmp_path / "rest44.ply", columns), "44 f_rest fields")


def test_gap_in_f_rest_names_is_refused(raw_vertex: np.ndarray, tmp_path: Path):
    columns = {("f_rest_99" if n == "f_rest_3" else n): raw_vertex[n] for n in raw_vertex.dtype.names}
    _expect_refusal(_write_fields(tmp_path / "gap.ply", columns), "f_rest_3")


def test_missing_file_and_bad_arrays(pretrained_ply: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="absent.ply"):
        read_ply(tmp_path / "absent.ply")
    arrays = read_ply(pretrained_ply)
    target = write_ply(tmp_path / "keep.ply", arrays)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="f_rest must be"):
        write_ply(target, {**arrays, "f_rest": arrays["f_rest"][:, :5]})
    with pytest.raises(ValueError, match="'rotation' must hold 4 values for each of the 9080"):
        write_ply(target, {**arrays, "rotation": arrays["rotation"][:, :3]})
    with pytest.raises(ValueError, match="'opacity' must hold 1 values for each of the 9080"):
        write_ply(target, {**arrays, "opacity": arrays["opacity"][:-1]})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.ply"]


def test_fields_of_other_types_read_like_float32(pretrained_ply: Path, raw_vertex: np.ndarray,
                                                  tmp_path: Path):
    """A file whose positions are doubles (not the one float32 table) reads field by field to
    the same arrays as the float32 file."""
    dtype = [(name, "<f8" if name in ("x", "y", "z") else "<f4")
             for name in raw_vertex.dtype.names]
    table = np.empty(len(raw_vertex), dtype=dtype)
    for name in raw_vertex.dtype.names:
        table[name] = raw_vertex[name]
    path = tmp_path / "doubles.ply"
    PlyData([PlyElement.describe(table, "vertex")], byte_order="<").write(str(path))
    expected, arrays = read_ply(pretrained_ply), read_ply(path)
    assert arrays.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
