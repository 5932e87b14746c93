"""Training on real data: a short train.py run learns and writes reloadable outputs; a resumed
run equals an uninterrupted one; schedules; checkpoint errors."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arguments import ModelParams, OptimizationParams, PipelineParams, read_cfg_args
from scene import read_scene_info
from scene.gaussian_model import GaussianModel
from training import TrainOptions, train
from training.checkpoint import load_checkpoint
from training.optim import position_lr_schedule
from training.trainer import ViewSampler, configure_logging, sh_degree_at
from utils.output_paths import checkpoint_path

REPO = Path(__file__).resolve().parents[1]

# A short run at -r 8 (125x83 px): densification, every SH degree, the full lr decay.
SHORT_RUN = ["-r", "8", "--eval", "--iterations", "200", "--test_iterations", "1", "200",
             "--save_iterations", "100", "--densify_from_iter", "40", "--densify_until_iter",
             "160", "--densification_interval", "60", "--opacity_reset_interval", "1000",
             "--sh_increase_interval", "50", "--position_lr_max_steps", "200", "--quiet",
             "--skip_compress"]


def _scalars(model_path: Path) -> dict[str, dict[int, float]]:
    """Every TensorBoard scalar of a run, {tag: {step: value}}, read back from the events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(model_path)).Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)}
            for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def short_run(shared_data, tmp_path_factory) -> Path:
    model_path = tmp_path_factory.mktemp("statuette_run")
    subprocess.run([sys.executable, "train.py", "-s", str(shared_data / "statuette"), "-m",
                    str(model_path), *SHORT_RUN], cwd=REPO, check=True, timeout=600)
    return model_path


@pytest.mark.slow
def test_short_run_learns(short_run):
    scalars = _scalars(short_run)
    psnr = scalars["test/loss_viewpoint - psnr"]
    assert sorted(psnr) == [1, 200]
    assert psnr[200] >= psnr[1] + 3.0, psnr
    train_psnr = scalars["train/loss_viewpoint - psnr"]
    assert train_psnr[200] >= train_psnr[1] + 3.0, train_psnr
    points = scalars["total_points"]
    assert points[200] != points[1]  # densification and pruning ran


@pytest.mark.slow
def test_short_run_outputs_reload(short_run, shared_data):
    cfg = read_cfg_args(short_run / "cfg_args")
    assert cfg["source_path"] == str(shared_data / "statuette") and cfg["resolution"] == 8
    cameras = json.loads((short_run / "cameras.json").read_text())
    assert len(cameras) == len(list((shared_data / "statuette" / "images").iterdir()))
    assert (short_run / "input.ply").is_file()
    for iteration in (100, 200):
        model = GaussianModel(3)
        model.load_ply(short_run / "point_cloud" / f"iteration_{iteration}" / "point_cloud.ply")
        assert model.num_gaussians == _scalars(short_run)["total_points"][iteration]
        assert torch.isfinite(model.get_xyz).all()
    assert not list(short_run.rglob(".*.tmp*"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_short_run_schedules_logged(short_run, shared_data):
    lrs = _scalars(short_run)["lr/xyz"]
    opt = OptimizationParams(position_lr_max_steps=200)
    scene_info = read_scene_info(ModelParams(source_path=str(shared_data / "statuette"),
                                             eval=True))  # extent of the training views
    extent = scene_info.nerf_normalization["radius"]
    schedule = position_lr_schedule(opt, extent)
    for step in (1, 100, 200):
        assert lrs[step] == pytest.approx(schedule(step), rel=1e-5)
    assert lrs[200] == pytest.approx(opt.position_lr_final * extent, rel=1e-5)


@pytest.mark.slow
def test_short_run_with_render_and_metrics(short_run):
    if not (REPO / "render.py").is_file() or not (REPO / "metrics.py").is_file():
        pytest.skip("render.py / metrics.py are not in this checkout yet")
    subprocess.run([sys.executable, "render.py", "-m", str(short_run), "--skip_train",
                    "--quiet"], cwd=REPO, check=True, timeout=300)
    assert sorted((short_run / "test" / "ours_200" / "renders").glob("*.png"))
    subprocess.run([sys.executable, "metrics.py", "-m", str(short_run)], cwd=REPO, check=True,
                   timeout=300)
    results = json.loads((short_run / "results.json").read_text())
    assert results["ours_200"]["PSNR"] > 10.0


def test_sh_degree_schedule():
    assert [sh_degree_at(s, 3, 1000) for s in (1, 999, 1000, 1999, 2000, 3000, 30_000)] == \
        [0, 0, 1, 1, 2, 3, 3]
    assert sh_degree_at(30_000, 1, 1000) == 1


def test_logging_stream_keeps_json_stdout_clean(capsys):
    """Benchmarks print JSON on stdout: their log lines (e.g. 'LPIPS skipped') go to stderr."""
    try:
        configure_logging(quiet=True, stream=sys.stderr)
        logging.getLogger("utils.lpips").warning("LPIPS skipped: offline")
        logging.getLogger("utils.lpips").info("not shown with quiet")
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == "LPIPS skipped: offline\n"
        configure_logging(quiet=False)
        logging.getLogger("training").info("to stdout")
        assert capsys.readouterr().out == "to stdout\n"
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)


def test_view_sampler_passes_are_permutations():
    sampler = ViewSampler(7, torch.Generator().manual_seed(3))
    passes = [[sampler.next() for _ in range(7)] for _ in range(3)]
    assert all(sorted(p) == list(range(7)) for p in passes)
    assert passes[0] != passes[1]
    sampler.next()
    state = sampler.state_dict()  # mid-pass: the rest of this pass is part of the state
    rest = [sampler.next() for _ in range(6)]
    other = ViewSampler(7, torch.Generator())
    other.load_state_dict(state)
    assert [other.next() for _ in range(6)] == rest


def _run(source: Path, model_path: Path, iterations: int, **options) -> GaussianModel:
    dataset = ModelParams(source_path=str(source), model_path=str(model_path), resolution=8,
                          eval=True)
    opt = OptimizationParams(iterations=iterations, densify_from_iter=2, densify_until_iter=10,
                             densification_interval=4, opacity_reset_interval=5,
                             sh_increase_interval=3, position_lr_max_steps=12,
                             random_background=True)
    _, gaussians = train(dataset, opt, PipelineParams(), TrainOptions(
        test_iterations=[], save_iterations=[], quiet=True, seed=5, **options))
    return gaussians


@pytest.mark.slow
def test_resume_equals_uninterrupted(shared_data, tmp_path):
    """Stop at a checkpoint (after an opacity reset, between densifications), resume with
    disturbed global RNGs, and end with the parameters of one uninterrupted run."""
    source = shared_data / "statuette"
    full = _run(source, tmp_path / "full", 12, checkpoint_iterations=[6])
    ckpt = checkpoint_path(tmp_path / "full", 6)
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["iteration"] == 6
    assert set(checkpoint["rng"]) == {"torch", "numpy", "python", "generator"}
    torch.manual_seed(1234)  # disturb the global RNGs: the checkpoint must restore them
    resumed = _run(source, tmp_path / "resumed", 12, start_checkpoint=str(ckpt))
    assert resumed.num_gaussians == full.num_gaussians
    assert resumed.active_sh_degree == full.active_sh_degree == 3
    for name, value in full.params.items():
        torch.testing.assert_close(resumed.params[name].detach(), value.detach(),
                                   rtol=1e-5, atol=1e-6)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="chkpnt7.pth"):
        load_checkpoint(tmp_path / "chkpnt7.pth")
    legacy = tmp_path / "chkpnt1.pth"
    torch.save(({"xyz": torch.zeros(1)}, 1), legacy)  # the original 3DGS positional tuple
    with pytest.raises(ValueError, match="expected a dict"):
        load_checkpoint(legacy)
    partial = tmp_path / "chkpnt2.pth"
    torch.save({"iteration": 2}, partial)
    with pytest.raises(ValueError, match="lacks model"):
        load_checkpoint(partial)
