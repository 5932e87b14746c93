"""The JavaScript decoder (web/gsc.mjs, web/gsc2ply.mjs) in Node.js, against the Python side:
constriction's range coder and its float→integer frequency rule on random tables; the PLY
gsc2ply writes equals render.py --export_ply's within 1 float32 ulp on bitstreams of SH degrees
0–3 at qualities 1, 5 and 9 (the shared PLY) and on the bundled scene's (whose cameras give
the up vector of format 3); format 2 files read as before; every seeded fuzz mutant the
Python reader refuses, the JavaScript reader refuses with a GscFormatError, and what both
accept decodes to the same bits."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from arguments import ModelParams
from compression.bitstream import save
from compression.compact_format import (CompactFormatError, camera_up, parse_compact,
                                        read_compact)
from compression.entropy import EntropyError, Model, encode_symbols
from compression.layouts import LAYOUTS
from compression.settings import CompressionParams
from scene import Scene
from scene.gaussian_model import GaussianModel
from scene.ply import read_ply, write_ply
from tests._codec import decode, prepare
from tests._compact_fuzz import mutations
from training.compress import load_given_model

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "web" / "harness.mjs"
GSC2PLY = REPO / "web" / "gsc2ply.mjs"
PLY_NAME = "small_3dgs_sh3.ply"
NODE = shutil.which("node")


def _node_major() -> int:
    if NODE is None:
        return 0
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    return int(version.strip().lstrip("v").split(".")[0])


pytestmark = pytest.mark.skipif(
    _node_major() < 18, reason="Node.js >= 18 is not installed (.ci/run installs it); the "
                               "JavaScript decoder's tests need it")


def _node(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _harness(mode: str, parameter: str, files: list[Path], timeout: float = 300) -> list[dict]:
    """One JSON result per file from tests/web/harness.mjs."""
    result = _node(str(HARNESS), mode, parameter, *map(str, files), timeout=timeout)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(files), result.stderr
    return lines


def _compressed(params: dict, folder: Path, cameras=None, **flags) -> Path:
    state, coded = prepare(params, cameras, CompressionParams(layout="compact", **flags),
                           torch.Generator().manual_seed(0))
    state.eval()
    return Path(save(state, coded, folder)["path"])


@pytest.fixture(scope="module")
def shared_params(shared_data: Path) -> dict:
    model = GaussianModel(3)
    model.load_ply(shared_data / "pretrained_ply" / PLY_NAME)
    return {k: v.detach().clone() for k, v in model.params.items()}


@pytest.fixture(scope="module")
def bitstreams(shared_params: dict, sample_scene: Path, shared_data: Path,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compact files of the shared PLY at SH degrees 0–3 × qualities 1, 5, 9 (no cameras), and
    of 2,000 of its Gaussians moved into the bundled lego scene, compressed with its cameras."""
    folder = tmp_path_factory.mktemp("web_bitstreams")
    files = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for degree in range(4):
            params = dict(shared_params)
            params["f_rest"] = shared_params["f_rest"][:, :(degree + 1) ** 2 - 1].contiguous()
            for quality in (1, 5, 9):
                name = f"d{degree}_q{quality}"
                files[name] = _compressed(params, folder / name, quality=quality)
        arrays = {k: v[:2000] for k, v in read_ply(shared_data / "pretrained_ply" / PLY_NAME).items()}
        centre = arrays["xyz"].mean(axis=0)
        radius = float(np.abs(arrays["xyz"] - centre).max())
        arrays["xyz"] = (arrays["xyz"] - centre) / radius
        arrays["scaling"] = arrays["scaling"] - np.float32(np.log(radius))
        ply = write_ply(folder / "lego_input.ply", arrays)
        dataset = ModelParams(source_path=str(sample_scene), model_path=str(folder / "lego"),
                              resolution=8, eval=True, white_background=True)
        scene, gaussians = load_given_model(dataset, ply)
        params = {k: v.detach().clone() for k, v in gaussians.params.items()}
        files["lego"] = _compressed(params, folder / "lego_compact", scene.getTrainCameras())
    finally:
        torch.set_num_threads(threads)
    return files


def _as_version_2(data: bytes) -> bytes:
    """The same content as a format-2 file (version 3 minus the 12 up-vector bytes)."""
    body = data[:4] + b"\x02" + data[5:105] + data[117:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 ulps (units in the last place) between two float32 arrays."""
    def ordered(x: np.ndarray) -> np.ndarray:
        bits = x.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    return np.abs(ordered(a) - ordered(b))


# ------------------------------------------------------------------------------ entropy streams

def test_range_decoder_and_frequency_rule_match_constriction(tmp_path: Path) -> None:
    """Streams constriction wrote (CATEGORICAL and LAPLACE models, alphabets of 2 to 2^19
    symbols, skewed and flat histograms, rare symbols whose float probability is below
    2^-24) decode in JavaScript to the same symbols."""
    rng = np.random.default_rng(7)
    cases = []
    for span in (1, 2, 7, 60, 300, 5000, 1 << 19):
        for shape in ("flat", "skewed", "laplace", "sparse"):
            n = int(rng.integers(200, 3000))
            if shape == "flat":
                symbols = rng.integers(-span // 2, span - span // 2 + 1, n)
            elif shape == "skewed":
                symbols = np.minimum(rng.geometric(0.6, n) - 1, span)
            elif shape == "laplace":
                symbols = np.clip(np.rint(rng.laplace(0, max(span / 50, 0.3), n)),
                                  -span // 2, span // 2)
            else:  # one dominant symbol and a few far outliers
                symbols = np.zeros(n, dtype=np.int64)
                symbols[rng.integers(0, n, 3)] = rng.integers(-span // 2 - 1, span // 2 + 1, 3)
            symbols = symbols.astype(np.int64)
            for model in (None, Model.CATEGORICAL, Model.LAPLACE):
                if symbols.min() == symbols.max() and model is not None:
                    continue
                cases.append((symbols, model))
    files = []
    for index, (symbols, model) in enumerate(cases):
        path = tmp_path / f"{index}.bin"
        path.write_bytes(encode_symbols(symbols, model))
        files.append(path)
    results = _harness("symbols", str(1 << 30), files)
    for (symbols, model), result in zip(cases, results):
        assert "error" not in result, (model, result)
        np.testing.assert_array_equal(np.array(result["symbols"]), symbols)


# ------------------------------------------------------------------------------ PLY parity

def _render_exports(pairs: list[tuple[Path, Path]]) -> None:
    """``render.py --given_ply_path <gsc> --export_ply <ply> --quiet`` for every pair, in one
    Python process (render.main is what the command runs)."""
    script = ("import sys, render\n"
              "args = sys.argv[1:]\n"
              "for gsc, ply in zip(args[::2], args[1::2]):\n"
              "    render.main(['--given_ply_path', gsc, '--export_ply', ply, '--quiet'])\n")
    result = subprocess.run([sys.executable, "-c", script, *[str(p) for pair in pairs for p in pair]],
                            cwd=REPO, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


def _ply_parts(path: Path) -> tuple[bytes, np.ndarray]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end], np.frombuffer(data, dtype="<f4", offset=end)


@pytest.mark.slow
def test_gsc2ply_writes_the_ply_render_py_exports(bitstreams: dict[str, Path],
                                                  tmp_path: Path) -> None:
    version_2 = tmp_path / "lego_v2.gsc"
    version_2.write_bytes(_as_version_2(bitstreams["lego"].read_bytes()))
    inputs = {**bitstreams, "lego_v2": version_2}
    pairs = [(path, tmp_path / f"{name}.py.ply") for name, path in inputs.items()]
    _render_exports(pairs)
    for name, path in inputs.items():
        ours = tmp_path / f"{name}.js.ply"
        result = _node(str(GSC2PLY), str(path), str(ours))
        assert result.returncode == 0 and not result.stderr, (name, result.stderr)
        header, values = _ply_parts(ours)
        python_header, python_values = _ply_parts(tmp_path / f"{name}.py.ply")
        assert header == python_header, name
        assert values.shape == python_values.shape and np.isfinite(values).all(), name
        assert int(_ulps(values, python_values).max()) <= 1, name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_format_3_carries_the_cameras_up_and_format_2_stays_readable(
        bitstreams: dict[str, Path], sample_scene: Path, tmp_path: Path) -> None:
    """The bundled Blender scene is z-up: its cameras' mean up vector is stored and both
    readers return it; without cameras it is unknown (null); the same content as a format-2
    file decodes to the same model in both readers."""
    lego = read_compact(bitstreams["lego"], LAYOUTS["compact"])
    assert lego.up is not None and lego.up[2] > 0.9 and abs(np.linalg.norm(lego.up) - 1) < 1e-6
    assert read_compact(bitstreams["d3_q5"], LAYOUTS["compact"]).up is None
    version_2 = tmp_path / "lego_v2.gsc"
    version_2.write_bytes(_as_version_2(bitstreams["lego"].read_bytes()))
    old = parse_compact(version_2.read_bytes(), LAYOUTS["compact"])
    assert old.up is None
    for name, value in decode(old).items():
        assert torch.equal(value, decode(lego)[name]), name
    results = _harness("gsc", str(tmp_path), [bitstreams["lego"], bitstreams["d3_q5"], version_2])
    assert [r["formatVersion"] for r in results] == [3, 3, 2]
    assert np.array_equal(np.float32(results[0]["up"]), lego.up)
    assert results[1]["up"] is None and results[2]["up"] is None
    for index in (0, 2):
        for array in ("positions", "quaternions", "fRest"):
            assert (tmp_path / f"0.{array}.bin").read_bytes() == \
                (tmp_path / f"{index}.{array}.bin").read_bytes(), array


def test_camera_up_is_the_mean_camera_up(sample_scene: Path, tmp_path: Path) -> None:
    dataset = ModelParams(source_path=str(sample_scene), model_path=str(tmp_path / "m"),
                          resolution=8, eval=True, white_background=True)
    cameras = Scene(dataset, None).getTrainCameras()
    ups = np.stack([-c.world_to_cam[1, :3].numpy().astype(np.float64) for c in cameras])
    up = camera_up(cameras)
    mean = ups.mean(axis=0)
    np.testing.assert_allclose(up, mean / np.linalg.norm(mean), rtol=0, atol=1e-7)
    assert camera_up([]) is None and camera_up(None) is None


# ------------------------------------------------------------------------------ damaged files

@pytest.mark.slow
def test_fuzzed_files_are_refused_as_in_python(bitstreams: dict[str, Path],
                                               tmp_path: Path) -> None:
    data, other = bitstreams["d3_q5"].read_bytes(), bitstreams["d3_q1"].read_bytes()
    cases = mutations(data, other, np.random.default_rng(2024))
    files, python = [], []
    for index, (name, damaged) in enumerate(cases):
        path = tmp_path / f"{index}.gsc"
        path.write_bytes(damaged)
        files.append(path)
        try:
            python.append(decode(parse_compact(damaged, LAYOUTS["compact"])))
        except (CompactFormatError, EntropyError):
            python.append(None)
    out = tmp_path / "arrays"
    out.mkdir()
    results = _harness("gsc", str(out), files, timeout=600)
    refused = 0
    for index, ((name, damaged), expected, result) in enumerate(zip(cases, python, results)):
        if expected is None:
            refused += 1
            error = result.get("error")
            assert error and error["name"] == "GscFormatError", (name, result)
            assert error["message"] and "\n" not in error["message"], (name, error)
        else:
            assert "error" not in result, (name, result)
            for array, param in (("positions", "xyz"), ("quaternions", "rotation"),
                                 ("opacityLogits", "opacity")):
                decoded = np.fromfile(out / f"{index}.{array}.bin", dtype=np.float32)
                assert np.array_equal(decoded, expected[param].numpy().reshape(-1)), name
        if not name.endswith("+crc") and damaged != data:
            assert "error" in result, name  # the CRC catches every unrepaired change
    assert refused >= len(cases) // 2


def test_gsc2ply_refuses_a_damaged_file_with_one_line(bitstreams: dict[str, Path],
                                                      tmp_path: Path) -> None:
    data = bitstreams["d3_q5"].read_bytes()
    body = data[:8] + bytes([data[8] ^ 1]) + data[9:-4]  # N off by one, CRC recomputed
    for name, damaged in {"truncated": data[:len(data) // 3],
                          "flipped": data[:100] + bytes([data[100] ^ 1]) + data[101:],
                          "inconsistent": body + struct.pack("<I", zlib.crc32(body)),
                          "padded": data + b"\0" * 7}.items():
        bad = tmp_path / f"{name}.gsc"
        bad.write_bytes(damaged)
        out = tmp_path / f"{name}.ply"
        result = _node(str(GSC2PLY), str(bad), str(out))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (name, result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"gsc2ply: error: {bad}: "), (name, lines)
        assert not out.exists()
    missing = _node(str(GSC2PLY), str(tmp_path / "absent.gsc"), str(tmp_path / "absent.ply"))
    assert missing.returncode == 2 and missing.stderr.startswith("gsc2ply: error: ")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ply") == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
