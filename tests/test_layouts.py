"""Layouts as data (compression/layouts.py) and the import layering of docs/ARCHITECTURE.md."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from compression.bins_codec import BINS_CODEC
from compression.bins_format import BINS
from compression.codec import CODED_PARAMS, Layout
from compression.compact_codec import COMPACT_CODEC
from compression.layouts import CODECS, LAYOUTS
from scene.gaussian_model import GaussianModel
from utils.general_utils import build_rotation

REPO = Path(__file__).resolve().parents[1]

#: docs/ARCHITECTURE.md's layering, bottom up: a package imports only packages of its rank or
#: below (entry points, scripts/ and benchmarks/ stand above all of them; sweeps/ runs the
#: entry points as subprocesses, so it stands above training/)
LAYERS = {"utils": 0, "arguments": 1, "gaussian_renderer": 2, "compression": 3, "scene": 4,
          "reporting": 5, "training": 6, "sweeps": 7}
ENTRY_POINTS = {"train", "render", "metrics", "sweep"}


@pytest.fixture(scope="module")
def real_params(shared_data: Path) -> dict[str, torch.Tensor]:
    """500 Gaussians of the pretrained PLY (SH degree 3), float64."""
    model = GaussianModel(3)
    model.load_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")
    return {k: v.detach()[:500].double() for k, v in model.params.items()}


def test_column_counts_files_and_codec() -> None:
    seed, official = LAYOUTS["seed"], LAYOUTS["official"]
    assert seed.width(seed.raht, 3) == 55 and seed.width(seed.raht, 1) == 19
    assert not seed.direct and not seed.vq
    assert (official.width(official.raht, 3), official.width(official.direct, 3),
            official.width(official.vq, 3)) == (7, 3, 45)
    assert seed.files == ("oct.npz", "orgb.npz", "t.npz")
    assert official.files == seed.files + ("ct.npz", "ntk.npz", "um.npz")
    assert seed.codec is official.codec is BINS_CODEC and LAYOUTS["compact"].codec is COMPACT_CODEC
    assert CODECS == (BINS_CODEC, COMPACT_CODEC)
    assert BINS_CODEC.container is BINS and BINS.file_name == "bins.zip"
    assert "codebook" in official.trains and "f_rest" not in official.trains
    assert "f_rest" in seed.trains and "codebook" not in seed.trains


def test_columns_and_their_inverse_on_real_parameters(real_params: dict) -> None:
    for name, layout in LAYOUTS.items():
        groups = layout.raht + layout.direct + layout.vq
        matrix = layout.columns(groups, real_params)
        assert matrix.shape == (500, layout.width(groups, 3)), name
        back = layout.params_from_columns(groups, matrix, 3)
        assert sorted(back) == sorted(CODED_PARAMS), name
        for param, value in back.items():
            if param == "rotation":  # via Euler angles: the same rotation, a unit quaternion
                torch.testing.assert_close(build_rotation(value),
                                           build_rotation(real_params[param]), rtol=0, atol=1e-9)
            else:
                assert torch.equal(value, real_params[param]), (name, param)
    # the seed order: opacity, Euler, f_dc, f_rest (in-memory order), log-scales
    seed = LAYOUTS["seed"]
    matrix = seed.columns(seed.raht, real_params)
    p = real_params
    for column, values in {0: p["opacity"][:, 0], 4: p["f_dc"][:, 0, 0], 7: p["f_rest"][:, 0, 0],
                           8: p["f_rest"][:, 0, 1], 10: p["f_rest"][:, 1, 0],
                           51: p["f_rest"][:, 14, 2], 52: p["scaling"][:, 0]}.items():
        assert torch.equal(matrix[:, column], values), column


def test_a_layout_must_code_every_parameter_once() -> None:
    seed = LAYOUTS["seed"]
    with pytest.raises(ValueError, match="must code each"):
        Layout(name="partial", raht=("opacity", "euler"), direct=(), vq=(), trains=(),
               files=seed.files, codec=seed.codec, defaults=seed.defaults)
    with pytest.raises(ValueError, match="must code each"):
        Layout(name="twice", raht=seed.raht, direct=("scaling",), vq=(), trains=(),
               files=seed.files, codec=seed.codec, defaults=seed.defaults)


def _sources() -> list[Path]:
    return sorted(path for package in LAYERS for path in (REPO / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    """The project packages and entry points a file imports, at module level or inside
    functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & (set(LAYERS) | ENTRY_POINTS)


def test_imports_point_one_way() -> None:
    upward = []
    for path in _sources():
        package = path.relative_to(REPO).parts[0]
        upward += [f"{path.relative_to(REPO)} imports {imported}"
                   for imported in _imported_packages(path)
                   if imported in ENTRY_POINTS or LAYERS[imported] > LAYERS[package]]
    assert not upward, upward


def test_no_code_compares_a_layout_name() -> None:
    """Behaviour hangs on the layout record's fields, never on ``layout == "<name>"``."""
    comparisons = []
    for path in _sources() + sorted(REPO.glob("*.py")) + sorted((REPO / "scripts").glob("*.py")) \
            + sorted((REPO / "benchmarks").glob("*.py")):
        if path == REPO / "compression" / "layouts.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                    isinstance(side, ast.Constant) and side.value in LAYOUTS
                    for side in [node.left, *node.comparators]):
                comparisons.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not comparisons, comparisons
