"""render.py: cfg_args merging, iteration choice, output layout and pixel content."""
from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import render as render_cli
from arguments import ModelParams, PipelineParams
from gaussian_renderer import render
from scene import Scene
from scene.gaussian_model import GaussianModel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_dir(sample_scene: Path, tmp_path: Path) -> Path:
    """A model folder trained on the bundled sample: iterations 3 and 7 saved (the 7 with
    brighter colours), cfg_args with --eval, -w and -r 4 like a training run writes them."""
    args = ModelParams(source_path=str(sample_scene), model_path=str(tmp_path / "model"),
                       eval=True, white_background=True, resolution=4, num_random_points=400,
                       sh_degree=1)
    gaussians = GaussianModel(args.sh_degree)
    scene = Scene(args, gaussians)
    scene.write_model_files({**dataclasses.asdict(args), **dataclasses.asdict(PipelineParams())})
    scene.save(3)
    with torch.no_grad():
        gaussians.params["f_dc"] += 0.5
        gaussians.params["opacity"] += 3.0
    scene.save(7)
    return tmp_path / "model"


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32) / 255.0


def test_render_writes_latest_iteration_with_cfg_args(model_dir: Path, sample_scene: Path
                                                      ) -> None:
    folders = render_cli.main(["-m", str(model_dir), "--quiet", "--backend", "torch"])
    assert folders == [model_dir / "train" / "ours_7", model_dir / "test" / "ours_7"]
    for folder, count in zip(folders, (24, 8)):
        names = [f"{i:05d}.png" for i in range(count)]
        assert sorted(p.name for p in (folder / "renders").iterdir()) == names
        assert sorted(p.name for p in (folder / "gt").iterdir()) == names

    # pixels: the render of iteration 7 and the white-composited ground truth at -r 4
    args = ModelParams(source_path=str(sample_scene), model_path=str(model_dir), eval=True,
                       white_background=True, resolution=4, sh_degree=1)
    gaussians = GaussianModel(1)
    scene = Scene(args, gaussians, load_iteration=7, shuffle=False)
    view = scene.getTestCameras()[2]
    expected = render(view, gaussians, PipelineParams(backend="torch"), torch.ones(3))["render"]
    rendered = _png(model_dir / "test" / "ours_7" / "renders" / "00002.png")
    assert rendered.shape == (50, 50, 3) and (rendered < 0.9).mean() > 0.05  # not just background
    np.testing.assert_allclose(rendered, expected.detach().permute(1, 2, 0).clamp(0, 1).numpy(),
                               atol=0.5 / 255 + 1e-6)
    gt = _png(model_dir / "test" / "ours_7" / "gt" / "00002.png")
    np.testing.assert_allclose(gt, view.original_image.permute(1, 2, 0).numpy(),
                               atol=0.5 / 255 + 1e-6)
    assert gt[0, 0].tolist() == [1.0, 1.0, 1.0]  # -w from cfg_args: white corners


def test_render_cli_flags_override(model_dir: Path) -> None:
    folders = render_cli.main(["-m", str(model_dir), "--quiet", "--iteration", "3",
                               "--skip_train", "-r", "8", "--backend", "torch"])
    assert folders == [model_dir / "test" / "ours_3"]
    assert not (model_dir / "train").exists()
    assert _png(folders[0] / "gt" / "00000.png").shape == (25, 25, 3)


def test_render_cli_errors(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(SystemExit):
        render_cli.main(["-m", str(tmp_path / "missing"), "--quiet"])
    with pytest.raises(FileNotFoundError, match="iteration_9"):
        render_cli.main(["-m", str(model_dir), "--iteration", "9", "--quiet"])


@pytest.mark.slow
def test_render_script_runs(model_dir: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "render.py"), "-m", str(model_dir),
                           "--skip_train", "--quiet", "--backend", "torch"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(list((model_dir / "test" / "ours_7" / "renders").iterdir())) == 8
    assert "Rendering" not in done.stderr  # --quiet silences the progress bar


def _truncate_pixels(png: Path) -> None:
    """Cut the PNG 16 bytes into its first IDAT chunk: the header (size) stays readable, the
    pixels do not."""
    data = png.read_bytes()
    offset = 8  # signature; then chunks of length (4 bytes), type (4), data, CRC (4)
    while data[offset + 4:offset + 8] != b"IDAT":
        offset += 12 + struct.unpack(">I", data[offset:offset + 4])[0]
    png.write_bytes(data[:offset + 8 + 16])


@pytest.mark.slow
def test_skip_train_never_reads_train_images(model_dir: Path, sample_scene: Path,
                                             tmp_path: Path) -> None:
    """With every train image's pixels unreadable, --skip_train renders the test views; without
    it, render.py stops with one line naming a train image before writing any file."""
    scene_copy = shutil.copytree(sample_scene, tmp_path / "scene")
    for png in (scene_copy / "train").glob("*.png"):
        _truncate_pixels(png)
    command = [sys.executable, str(REPO / "render.py"), "-m", str(model_dir), "-s",
               str(scene_copy), "--quiet", "--backend", "torch"]
    done = subprocess.run(command + ["--skip_train"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(list((model_dir / "test" / "ours_7" / "gt").iterdir())) == 8
    shutil.rmtree(model_dir / "test")

    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"render.py: error: {scene_copy / 'train'}/")
    assert "not a readable image" in lines[0]
    assert not (model_dir / "train").exists() and not (model_dir / "test").exists()
