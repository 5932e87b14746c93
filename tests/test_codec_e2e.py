"""The codec through the real command lines: train.py → compress (both layouts) →
render.py --dec_npz → metrics.py → render.py --export_ply, and bad input handling.

Short schedules on the bundled sample scene at -r 8 (25 px), SH degree 1.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compression.bitstream import decode_file
from scene.gaussian_model import GaussianModel

REPO = Path(__file__).resolve().parents[1]
TRAIN_ITERATIONS = 60
FINETUNE = ["--finetune_iterations", "5", "--finetune_test_iterations", "0", "5"]
COMMON = ["-r", "8", "--eval", "--sh_degree", "1", "--backend", "torch", "--quiet",
          "--n_block", "16"]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"}
    env.pop("LPIPS_WEIGHTS", None)
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def model_dir(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained + compressed with the seed layout in the same run, then the trained PLY
    compressed again with the official layout into the same model folder."""
    model = tmp_path_factory.mktemp("e2e") / "model"
    _run("train.py", "-s", str(sample_scene), "-m", str(model), *COMMON,
         "--num_random_points", "300", "--iterations", str(TRAIN_ITERATIONS),
         "--sh_increase_interval", "20", "--test_iterations", str(TRAIN_ITERATIONS),
         "--save_iterations", str(TRAIN_ITERATIONS), *FINETUNE)
    ply = model / "point_cloud" / f"iteration_{TRAIN_ITERATIONS}" / "point_cloud.ply"
    _run("train.py", "--given_ply_path", str(ply), "-s", str(sample_scene), "-m", str(model),
         *COMMON, "--layout", "official", "--codebook_size", "64", "--vq_steps", "10",
         *FINETUNE)
    return model


def _report(model: Path, layout: str, k: int) -> dict:
    return json.loads((model / "compression" / layout / f"iteration_{k}" / "report.json")
                      .read_text())


@pytest.mark.slow
def test_both_layouts_saved_with_reports_and_csv(model_dir: Path) -> None:
    rows = list(csv.reader((model_dir / "compression" / "results.csv").open()))
    assert rows[0] == ["Submethod", "PSNR", "SSIM", "LPIPS", "Size [Bytes]", "#Gaussians"]
    assert [r[0] for r in rows[1:]] == ["seed_0", "seed_5", "official_0", "official_5"]
    for row in rows[1:]:
        layout, k = row[0].split("_")
        report = _report(model_dir, layout, int(k))
        archive = model_dir / "compression" / layout / f"iteration_{k}" / "bins.zip"
        assert report["size_bytes"] == archive.stat().st_size == int(row[4])
        assert report["num_gaussians"] == int(row[5])
        assert report["bits_per_gaussian"] == pytest.approx(8 * report["size_bytes"]
                                                            / report["num_gaussians"])
        assert float(row[1]) == pytest.approx(report["psnr"], abs=1e-5) and row[3] == ""
        assert report["eval_split"] == "test" and report["ply_size_bytes"] > report["size_bytes"]
    # the official layout's VQ'd f_rest makes it smaller than the seed layout
    assert _report(model_dir, "official", 5)["size_bytes"] < _report(model_dir, "seed", 5)[
        "size_bytes"]


@pytest.mark.slow
def test_render_dec_npz_metrics_and_export(model_dir: Path) -> None:
    _run("render.py", "-m", str(model_dir), "--dec_npz", "--skip_train", "--quiet")
    _run("render.py", "-m", str(model_dir), "--dec_npz", "--layout", "official",
         "--iteration", "0", "--skip_train", "--quiet")
    tests = model_dir / "test"
    assert sorted(p.name for p in tests.iterdir()) == ["compressed_official_0",
                                                       "compressed_seed_5"]
    assert len(list((tests / "compressed_seed_5" / "renders").glob("*.png"))) == 8
    _run("metrics.py", "-m", str(model_dir), "--quiet")
    results = json.loads((model_dir / "results.json").read_text())
    for method, (layout, k) in {"compressed_seed_5": ("seed", 5),
                                "compressed_official_0": ("official", 0)}.items():
        report = _report(model_dir, layout, k)
        assert results[method]["Size [Bytes]"] == report["size_bytes"]
        assert results[method]["Bits/Gaussian"] == pytest.approx(report["bits_per_gaussian"])
        # the PNG round trip (8-bit) costs little against the float-render PSNR of the report
        assert results[method]["PSNR"] == pytest.approx(report["psnr"], abs=0.1)

    exported = model_dir / "exported.ply"
    _run("render.py", "-m", str(model_dir), "--dec_npz", "--layout", "official",
         "--export_ply", str(exported))
    loaded = GaussianModel(1)
    loaded.load_ply(exported)
    expected = decode_file(model_dir / "compression" / "official" / "iteration_5" / "bins.zip")
    for name, value in expected.items():
        assert torch.equal(loaded.params[name], value), name


@pytest.mark.slow
def test_export_without_scene_from_given_bins_folder(model_dir: Path, tmp_path: Path) -> None:
    bins = model_dir / "compression" / "seed" / "iteration_0" / "bins"
    out = tmp_path / "seed0.ply"
    _run("render.py", "--given_ply_path", str(bins), "--export_ply", str(out))
    loaded = GaussianModel(1)
    loaded.load_ply(out)
    assert loaded.num_gaussians == _report(model_dir, "seed", 0)["num_gaussians"]


@pytest.mark.slow
def test_corrupt_bins_zip_gives_one_error_line(model_dir: Path) -> None:
    good = (model_dir / "compression" / "seed" / "iteration_5" / "bins.zip").read_bytes()
    corrupt_dir = model_dir / "compression" / "seed" / "iteration_99"
    corrupt_dir.mkdir()
    for name, data in {"truncated": good[: len(good) // 2],
                       "flipped": good[:200] + bytes(b ^ 0xFF for b in good[200:400])
                       + good[400:]}.items():
        (corrupt_dir / "bins.zip").write_bytes(data)
        result = _run("render.py", "-m", str(model_dir), "--given_ply_path",
                      str(corrupt_dir / "bins.zip"), "--quiet", check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0, name
        assert len(lines) == 1 and lines[0].startswith("render.py: error: "), (name, lines)
        assert "Traceback" not in result.stderr
        assert not (model_dir / "test" / "compressed_seed_99").exists()
        assert not (model_dir / "train" / "compressed_seed_99").exists()


@pytest.mark.slow
def test_bad_input_errors_are_one_line(tmp_path: Path) -> None:
    result = _run("train.py", "--given_ply_path", str(tmp_path / "missing.ply"), "-m",
                  str(tmp_path / "m"), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("train.py: error: ")
    assert "missing.ply" in result.stderr and "Traceback" not in result.stderr
    result = _run("train.py", "-m", str(tmp_path / "m"), "--quiet", check=False)
    assert result.returncode == 2 and "source_path" in result.stderr
