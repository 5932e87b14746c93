"""Size targets (``--target_size`` / ``--target_bits``, compact layout) on real data: the size
flag's units, the continuous ladder, refusals in one line, the search without a scene (the
shared PLY), the fit of a finetuned state, and train.py with a scene and a short finetune
(the bundled sample)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train as train_cli
from compression.compact_codec import auto_codebook_size
from compression.compact_format import COMPACT, read_compact
from compression.layouts import LAYOUTS
from compression.ladder import LADDER_RANGE, ladder_settings
from compression.settings import (ByteSize, CompressionParams, codec_settings,
                                  resolve_settings)
from compression.size_target import LOW_SHARE, encoded_size, fit, search, window
from scene.gaussian_model import GaussianModel
from sweeps.plan import grid_settings
from utils.cli import run_main

REPO = Path(__file__).resolve().parents[1]
COMPACT_LAYOUT = LAYOUTS["compact"]


def _train(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """train.py in this process: ``(exit status, stderr lines)``."""
    status = run_main(train_cli.main, "train.py", argv)
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope="module")
def shared_ply(shared_data: Path) -> Path:
    return shared_data / "pretrained_ply" / "small_3dgs_sh3.ply"


@pytest.fixture(scope="module")
def real_params(shared_ply: Path) -> dict[str, torch.Tensor]:
    model = GaussianModel(3)
    model.load_ply(shared_ply)
    return {k: v.detach().clone() for k, v in model.params.items()}


def test_sizes_parse_with_decimal_and_binary_suffixes() -> None:
    assert [ByteSize(text) for text in ("123", "200KB", "200kB", "1.5MB", "64KiB", "2mib",
                                        "0.5KB", " 7 b ")] == [
        123, 200_000, 200_000, 1_500_000, 65_536, 2 * 2 ** 20, 500, 7]
    for text, message in (("200XB", "not a size"), ("KB", "not a size"), ("-1KB", "not a size"),
                          ("0", "at least 1 byte"), ("0.2B", "at least 1 byte")):
        with pytest.raises(ValueError, match=message):
            ByteSize(text)
    with pytest.raises(SystemExit) as exit_info:
        train_cli.build_parser().parse_args(["--target_size", "200XB"])
    assert exit_info.value.code == 2
    assert train_cli.build_parser().parse_args(["--target_size", "1.5KiB"]).target_size == 1536


def test_ladder_meets_the_levels_and_extends_them() -> None:
    levels = COMPACT_LAYOUT.quality_levels
    for quality, level in levels.items():
        assert ladder_settings(levels, float(quality)) == {
            name: float(level[name]) for name in ("percent", "base_step", "voxel_ratio")}
        assert auto_codebook_size(COMPACT_LAYOUT, quality, 9000) == auto_codebook_size(
            COMPACT_LAYOUT, float(quality), 9000)
    positions = [i / 4 for i in range(int(LADDER_RANGE[1] * 4) + 1)]
    steps = [ladder_settings(levels, p)["base_step"] for p in positions]
    assert all(a > b for a, b in zip(steps, steps[1:]))  # finer all the way, ends included
    sizes = [auto_codebook_size(COMPACT_LAYOUT, p, 9000) for p in positions]
    assert all(a <= b for a, b in zip(sizes, sizes[1:]))
    between = ladder_settings(levels, 4.5)
    assert between["percent"] == pytest.approx((levels[4]["percent"] + levels[5]["percent"]) / 2)
    assert between["base_step"] == pytest.approx(
        math.sqrt(levels[4]["base_step"] * levels[5]["base_step"]))
    assert ladder_settings(levels, 0.0)["percent"] > levels[1]["percent"]
    with pytest.raises(ValueError, match="ladder position"):
        ladder_settings(levels, LADDER_RANGE[1] + 0.5)


def test_targets_are_refused_in_one_line(shared_ply: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    base = ["--given_ply_path", str(shared_ply), "-m", str(tmp_path / "m"), "--quiet"]
    for flags, message in (
            (["--layout", "seed", "--target_size", "200KB"], "--layout seed has fixed settings"),
            (["--layout", "official", "--target_bits", "40"],
             "--layout official has fixed settings"),
            (["--layout", "compact", "--target_size", "200KB", "--quality", "3"],
             "chooses --quality itself"),
            (["--layout", "compact", "--target_bits", "40", "--percent", "0.2",
              "--base_step", "0.1"], "chooses --percent, --base_step itself"),
            (["--layout", "compact", "--target_size", "200KB", "--voxel_ratio", "0.1"],
             "chooses --voxel_ratio itself"),
            (["--layout", "compact", "--target_size", "200KB", "--target_bits", "40"],
             "not both"),
            (["--layout", "compact", "--target_bits", "-3"], "positive number")):
        status, lines = _train(base + flags, capsys)
        assert status == 2 and len(lines) == 1, lines
        assert lines[0].startswith("train.py: error: ") and message in lines[0], lines
    assert not (tmp_path / "m").exists()


def test_sweep_grid_takes_target_sizes() -> None:
    settings = grid_settings(["target_size=100KB,200KB,400KB"])
    assert [s.name for s in settings] == ["target_size=100KB", "target_size=200KB",
                                          "target_size=400KB"]
    assert settings[1].codec_flags("any") == {"target_size": "200KB"}
    with pytest.raises(ValueError, match="target_size=12XB: not a size"):
        grid_settings(["target_size=12XB"])


def test_search_without_a_scene_lands_in_the_window(real_params: dict) -> None:
    """Encode-only probes on the shared PLY: each target's chosen probe is within
    [97 %, 100 %] of it; the search spends a handful of probes."""
    base = codec_settings(resolve_settings(
        CompressionParams(layout="compact", target_size=ByteSize("60KB")), scene=False))
    for target in (20_000, 60_000, 130_000):
        low, high = window(target)
        assert low == math.ceil(LOW_SHARE * target)
        found = search(base.layout.codec, real_params, None, base, (low, high))
        assert found.outcome == "window"
        assert low <= encoded_size(base.layout.codec, found.state, found.params) <= high
        assert found.settings.quality is None and found.state.quality == 0
        assert len(found.probes) <= 12, found.probes


def test_fit_moves_a_finetuned_size_into_the_window(real_params: dict) -> None:
    """A state whose file is above the window drops its least important voxels; one below it
    takes finer steps (then drops what exceeds); the kept values are the state's own."""
    settings = codec_settings(resolve_settings(CompressionParams(layout="compact", quality=4),
                                               scene=False))
    codec = settings.layout.codec
    state, params = codec.prepare(real_params, None, settings, torch.Generator().manual_seed(0))
    state.eval()
    size = encoded_size(codec, state, params)
    for goal in (window(int(size * 0.9)), window(int(size * 1.15))):
        fitted, values, probes = fit(codec, state, params, None, goal, beta=settings.imp_beta)
        assert goal[0] <= encoded_size(codec, fitted, values) <= goal[1]
        assert probes[0].size_bytes == size and probes[0].stage == "finetuned"
        kept = torch.isin(state.keys, fitted.keys)
        assert torch.equal(values["f_dc"], params["f_dc"][kept])
        if goal[0] > size:
            assert any(p.stage == "finer steps" for p in probes)
            assert bool((fitted.quantizer.exponents.min(dim=1).values
                         < state.quantizer.exponents.min(dim=1).values).all())
        else:
            assert fitted.num_gaussians < state.num_gaussians
            # as few dropped as possible: the file in the window's top quarter, or one voxel
            # fewer dropped was probed and did not fit
            fitted_size = encoded_size(codec, fitted, values)
            assert (fitted_size >= goal[1] - (goal[1] - goal[0]) // 4
                    or any(p.num_gaussians == fitted.num_gaussians + 1 and p.size_bytes > goal[1]
                           for p in probes)), (fitted_size, goal, probes)
    same, _, probes = fit(codec, state, params, None, window(size), beta=settings.imp_beta)
    assert same is state and len(probes) == 1


def test_train_without_a_scene_writes_a_quality_0_file_within_the_target(
        shared_ply: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--target_size without a scene: one save, within the window, quality byte 0, report.json
    with the target, the settings found and the probes; a target above the finest settings
    writes the finest file and says so in one line; one below the coarsest is exit 2, one
    line, no file (no model folder)."""
    model = tmp_path / "m"
    status, _ = _train(["--given_ply_path", str(shared_ply), "-m", str(model), "--quiet",
                        "--layout", "compact", "--target_size", "48KiB"], capsys)
    assert status == 0
    saved = model / "compression" / "compact" / "iteration_0"
    size = (saved / COMPACT.file_name).stat().st_size
    assert window(48 * 1024)[0] <= size <= 48 * 1024
    assert read_compact(saved / COMPACT.file_name, COMPACT_LAYOUT).quality == 0
    assert (saved / COMPACT.file_name).read_bytes()[7] == 0  # magic, version, degree, depth
    report = json.loads((saved / "report.json").read_text())
    target = report["target"]
    assert report["size_bytes"] == size and report["settings"]["target_size"] == 48 * 1024
    assert report["settings"]["quality"] is None
    assert target["bytes"] == 48 * 1024 and target["window"] == list(window(48 * 1024))
    assert target["within"] and target["outcome"] == "window"
    assert set(target["settings"]) == {"ladder_position", "percent", "base_step",
                                       "voxel_ratio", "depth", "codebook_size"}
    probes = target["search"]["probes"]
    assert probes and probes[-1]["size_bytes"] <= 48 * 1024
    assert {"position", "percent", "base_step", "depth", "codebook_size", "size_bytes",
            "seconds"} <= set(probes[0])

    low = tmp_path / "low"
    status, lines = _train(["--given_ply_path", str(shared_ply), "-m", str(low), "--quiet",
                            "--layout", "compact", "--target_size", "2KB"], capsys)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("train.py: error: --target_size 2,000 bytes is below what "
                               "--layout compact reaches on this model: ")
    assert "is its coarsest" in lines[0]
    assert not low.exists()  # not even cfg_args


@pytest.mark.slow
def test_target_above_the_finest_writes_the_finest_file(shared_ply: Path,
                                                        tmp_path: Path) -> None:
    model = tmp_path / "m"
    result = subprocess.run(
        [sys.executable, "train.py", "--given_ply_path", str(shared_ply), "-m", str(model),
         "--quiet", "--layout", "compact", "--target_size", "5MB"], cwd=REPO,
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [  # warnings go through tqdm.write
        "--target_size 5,000,000 bytes: the finest settings need only "
        f"{(model / 'compression/compact/iteration_0' / COMPACT.file_name).stat().st_size:,} "
        "bytes; writing those"]
    report = json.loads((model / "compression" / "compact" / "iteration_0" / "report.json")
                        .read_text())
    assert report["target"]["outcome"] == "finest" and not report["target"]["within"]
    assert report["target"]["settings"]["ladder_position"] == LADDER_RANGE[1]
    assert report["size_bytes"] <= 5_000_000


@pytest.mark.slow
def test_last_save_after_the_finetune_is_within_the_target(sample_scene: Path,
                                                           tmp_path: Path) -> None:
    """train.py on the bundled scene (-r 8) with --target_bits and a short finetune: the
    search runs before it, every save reports its size, the last one lies in the window."""
    model = tmp_path / "model"
    result = subprocess.run(
        [sys.executable, "train.py", "-s", str(sample_scene), "-m", str(model), "-r", "8",
         "--eval", "--white_background", "--sh_degree", "1", "--backend", "torch", "--quiet",
         "--num_random_points", "600", "--iterations", "60", "--sh_increase_interval", "20",
         "--test_iterations", "60", "--save_iterations", "60", "--layout", "compact",
         "--target_bits", "30", "--finetune_iterations", "40", "--finetune_test_iterations",
         "0", "20", "40"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    reports = {k: json.loads((model / "compression" / "compact" / f"iteration_{k}" /
                              "report.json").read_text()) for k in (0, 20, 40)}
    last = reports[40]
    target = last["target"]
    num_input = round(8 * last["size_bytes"] / last["bits_per_input_gaussian"])
    assert target["target_bits"] == 30 and target["bytes"] == math.floor(30 * num_input / 8)
    low, high = target["window"]
    assert low <= last["size_bytes"] <= high and target["within"]
    assert last["size_bytes"] == (model / "compression" / "compact" / "iteration_40" /
                                  COMPACT.file_name).stat().st_size
    assert target["fit"]["probes"][0]["stage"] == "finetuned"
    assert all(r["target"]["fit"] is None and r["size_bytes"] > 0 for r in
               (reports[0], reports[20]))
    assert read_compact(model / "compression" / "compact" / "iteration_40" / COMPACT.file_name,
                        COMPACT_LAYOUT).quality == 0


@pytest.mark.slow
def test_unreachable_target_with_a_scene_leaves_the_model_folder_as_it_was(
        shared_data: Path, sample_scene: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    """-s with --given_ply_path and a target below the coarsest settings: exit 2, one line,
    and the search (which renders the scene's views) runs before cfg_args, cameras.json or
    input.ply is written: a new model folder is not created, an existing one is unchanged."""
    from scene.ply import read_ply, write_ply

    arrays = {k: v[:500] for k, v in read_ply(shared_data / "pretrained_ply" /
                                              "small_3dgs_sh3.ply").items()}
    centre = arrays["xyz"].mean(axis=0)
    radius = float(np.abs(arrays["xyz"] - centre).max())
    arrays["xyz"] = (arrays["xyz"] - centre) / radius  # inside the sample scene's views
    arrays["scaling"] = arrays["scaling"] - np.float32(np.log(radius))
    ply = write_ply(tmp_path / "given.ply", arrays)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("kept")
    for model in (tmp_path / "new", existing):
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        status, lines = _train(["-s", str(sample_scene), "-m", str(model), "--given_ply_path",
                                str(ply), "-r", "8", "--eval", "--white_background",
                                "--backend", "torch", "--quiet", "--layout", "compact",
                                "--target_size", "100"], capsys)
        assert status == 2 and len(lines) == 1, lines
        assert lines[0].startswith("train.py: error: --target_size 100 bytes is below what "
                                   "--layout compact reaches on this model: "), lines
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (existing / "notes.txt").read_text() == "kept"
