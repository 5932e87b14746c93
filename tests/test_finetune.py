"""Quantization-aware finetune and the codec orchestration on the bundled sample scene.

The scene is data/lego_sample at -r 8 (25 px) with the model initialised from the Blender
random points (SH degree 1) and a short 3DGS warm-up, so every test runs in seconds on 2 cores.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from arguments import ModelParams, OptimizationParams, PipelineParams
from compression.bitstream import save
from compression.layouts import LAYOUTS
from compression.settings import CompressionParams
from gaussian_renderer import ft_render, render
from scene import Scene
from scene.gaussian_model import GaussianModel
from tests._codec import settings_of
from training.compress import compress_model, resolve_compression
import training.finetune as finetune_module
from training.finetune import (FINETUNE_LRS, LSQ_STEP_LR, ParameterAverage,
                               create_finetune_optimizer,
                               default_test_iterations, evaluate_codec, finetune,
                               leaf_parameters, resolve_test_iterations)
from training.optim import create_optimizer
from training.trainer import photometric_loss

PIPE = PipelineParams(backend="torch")
WARMUP_STEPS = 20


@pytest.fixture(scope="module")
def sample(sample_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The sample scene and a warmed-up model state (plain Adam on all parameters)."""
    args = ModelParams(source_path=str(sample_scene), eval=True, resolution=8, sh_degree=1,
                       num_random_points=300,
                       model_path=str(tmp_path_factory.mktemp("sample_model")))
    gaussians = GaussianModel(args.sh_degree)
    scene = Scene(args, gaussians, seed=0)
    gaussians.active_sh_degree = 1
    optimizer = create_optimizer(gaussians.params, OptimizationParams(), scene.cameras_extent)
    cameras = scene.getTrainCameras()
    for step in range(WARMUP_STEPS):
        camera = cameras[step % len(cameras)]
        image = render(camera, gaussians, PIPE, torch.zeros(3))["render"]
        photometric_loss(image, camera.original_image, 0.2)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"scene": scene, "state": gaussians.capture_state()}


def _model(sample: dict) -> GaussianModel:
    model = GaussianModel(1)
    model.restore_state(sample["state"])
    return model


def _cfg(**kwargs) -> CompressionParams:
    return CompressionParams(**{"n_block": 16, "codebook_size": 64, "vq_steps": 10, **kwargs})


def _prepared(sample: dict, cameras=None, **flags) -> tuple:
    """``(codec, state, params)`` of the warmed-up model as ``compress_model`` hands them to
    the finetune."""
    settings = settings_of(_cfg(**flags))
    codec = settings.layout.codec
    state, params = codec.prepare(_model(sample).params, cameras, settings,
                                  torch.Generator().manual_seed(0))
    return codec, state, leaf_parameters(params)


def test_test_iteration_schedule() -> None:
    assert default_test_iterations(2500) == [0, 1000, 2000, 2500]
    assert default_test_iterations(2000) == [0, 1000, 2000]
    assert default_test_iterations(0) == [0]
    assert resolve_test_iterations(10, [10, 0, 5, 5]) == [0, 5, 10]
    with pytest.raises(ValueError, match="finetune_test_iterations"):
        resolve_test_iterations(10, [11])
    with pytest.raises(ValueError, match="finetune_iterations"):
        resolve_test_iterations(-1, [])


def test_qas_are_the_seed_quantizers(shared_data: Path) -> None:
    """SH degree 3, seed layout, 57 blocks: 55 × 57 = 3,135 quantizers (``qas[c*57 + j]``)."""
    model = GaussianModel(3)
    model.load_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")
    state = model.prepare_codec(None, settings_of(CompressionParams()),
                                torch.Generator().manual_seed(0))
    qas = state.quantizer
    assert len(qas) == 3135
    assert qas[3 * 57 + 5].column == 3 and qas[3 * 57 + 5].block == 5
    quantizer = model.init_qas(state, 20)
    assert len(quantizer) == 55 * 20 and quantizer is state.quantizer
    assert bool(quantizer.initialized) and bool((quantizer.max_val >= quantizer.min_val).all())
    assert float((quantizer.max_val - quantizer.min_val).max()) > 0


@pytest.mark.slow
def test_prepare_codec_adapter(sample: dict, tmp_path: Path) -> None:
    """GaussianModel.prepare_codec takes the codec's prepared parameters and hands the state
    out (the model keeps none); save_npz is the codec's save of the model's parameters."""
    model = _model(sample)
    params = {k: v.detach().clone() for k, v in model.params.items()}
    settings = settings_of(_cfg())
    state = model.prepare_codec(None, settings, torch.Generator().manual_seed(0))
    expected_state, expected = settings.layout.codec.prepare(params, None, settings,
                                                             torch.Generator().manual_seed(0))
    assert model.active_sh_degree == model.max_sh_degree and not hasattr(model, "codec")
    assert all(torch.equal(model.params[k], expected[k]) for k in expected)
    assert not model.params["xyz"].requires_grad
    assert all(model.params[k].requires_grad for k in ("f_dc", "f_rest", "opacity", "scaling",
                                                       "rotation"))
    state.eval()
    expected_state.eval()
    adapter = model.save_npz(state, tmp_path / "adapter")
    core = save(expected_state, expected, tmp_path / "core")
    assert Path(adapter["path"]).read_bytes() == Path(core["path"]).read_bytes()
    compact = _model(sample)
    compact_state = compact.prepare_codec(None, settings_of(CompressionParams(layout="compact")))
    with pytest.raises(ValueError, match="no block quantizers"):
        compact.init_qas(compact_state, 8)


def test_optimizer_trains_what_the_layout_trains(sample: dict) -> None:
    codec, state, params = _prepared(sample)
    groups = {g["name"]: g
              for g in create_finetune_optimizer(codec, state, params, 2.0).param_groups}
    assert list(groups) == list(LAYOUTS["seed"].trains)
    assert {k: g["lr"] for k, g in groups.items()} == {k: 2 * FINETUNE_LRS[k] for k in groups}
    assert all(g["eps"] == 1e-15 for g in groups.values())
    assert not params["xyz"].requires_grad

    codec, state, params = _prepared(sample, layout="official", quantizer="lsq")
    optimizer = create_finetune_optimizer(codec, state, params)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert list(groups) == [*LAYOUTS["official"].trains, "lsq_steps"]
    assert groups["codebook"]["params"][0] is state.codebook
    assert groups["codebook"]["lr"] == FINETUNE_LRS["f_rest"] and "f_rest" not in groups
    assert not params["f_rest"].requires_grad
    assert groups["lsq_steps"]["lr"] == LSQ_STEP_LR
    assert {id(p) for p in groups["lsq_steps"]["params"]} == {
        id(state.quantizer.step), id(state.direct_quantizer.step)}
    with pytest.raises(ValueError, match="lr_scale"):
        create_finetune_optimizer(codec, state, params, 0.0)


def test_finetune_schedules() -> None:
    """Seed and official keep CODEC.md §7's constant rates; compact's start at each tensor's
    first factor and fall along a half cosine to its second at the last step."""
    for name in ("seed", "official"):
        schedule = LAYOUTS[name].finetune_schedule
        assert {schedule.factor(tensor, step, 500) for tensor in FINETUNE_LRS
                for step in (1, 250, 500)} == {1.0}
    schedule = LAYOUTS["compact"].finetune_schedule
    assert schedule.factors and set(schedule.factors) <= set(LAYOUTS["compact"].trains)
    for tensor in LAYOUTS["compact"].trains:
        start, end = schedule.factors.get(tensor, (1.0, 1.0))
        factors = [schedule.factor(tensor, step, 500) for step in range(1, 501)]
        assert factors[0] == pytest.approx(start, rel=1e-4)
        assert factors[249] == pytest.approx((start + end) / 2)
        assert factors[-1] == pytest.approx(end)
        assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_parameter_average_weighs_each_step_by_decay_powers() -> None:
    """After step t the average is Σ_k d^(t-k)·p_k / Σ_k d^(t-k) over the values after steps
    1 … t; the starting values weigh nothing."""
    generator = torch.Generator().manual_seed(0)
    tensor = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    average = ParameterAverage([tensor], 0.9)
    values = []
    for step in range(1, 8):
        tensor.copy_(torch.randn(5, 3, generator=generator, dtype=torch.float64))
        values.append(tensor.clone())
        average.update(step)
        weights = [0.9 ** (step - k) for k in range(1, step + 1)]
        expected = sum(w * v for w, v in zip(weights, values)) / sum(weights)
        torch.testing.assert_close(average.averages[0], expected, rtol=1e-12, atol=1e-12)
    with average.loaded():
        assert torch.equal(tensor, average.averages[0])
    assert torch.equal(tensor, values[-1])
    for decay in (0.0, 1.0):
        with pytest.raises(ValueError, match="decay"):
            ParameterAverage([tensor], decay)


def test_compact_finetune_ends_at_the_average(sample: dict, monkeypatch) -> None:
    """The compact finetune trains as without averaging (evaluations leave the trained values
    as they were), each evaluation sees the average of the values after the steps so far, and
    the finetune leaves the last one in the parameters."""
    scene = sample["scene"]
    decay = LAYOUTS["compact"].finetune_schedule.average_decay
    assert 0 < decay < 1 and not LAYOUTS["seed"].finetune_schedule.average_decay
    create = finetune_module.create_finetune_optimizer

    def run(test_iterations: list[int]) -> tuple[list, dict, list]:
        codec, state, params = _prepared(sample, scene.getTrainCameras(), layout="compact",
                                         n_block=None, codebook_size=None)
        trained = list(codec.trainable(state, params)[0].values())
        raw: list[list[torch.Tensor]] = []

        def recording(*args, **kwargs):
            optimizer = create(*args, **kwargs)
            step = optimizer.step

            def step_and_record(*a, **k):
                result = step(*a, **k)
                raw.append([tensor.detach().clone() for tensor in trained])
                return result
            optimizer.step = step_and_record
            return optimizer

        monkeypatch.setattr(finetune_module, "create_finetune_optimizer", recording)
        seen: dict[int, list] = {}
        finetune(codec, state, params, scene.getTrainCameras(), PIPE, torch.zeros(3),
                 iterations=6, test_iterations=test_iterations, quiet=True,
                 on_test=lambda step: seen.update(
                     {step: [tensor.detach().clone() for tensor in trained]}))
        return raw, seen, [tensor.detach().clone() for tensor in trained]

    raw, seen, final = run(list(range(1, 7)))
    raw_untested, _, final_untested = run([6])
    assert all(torch.equal(a, b) for step_a, step_b in zip(raw, raw_untested)
               for a, b in zip(step_a, step_b))
    assert all(torch.equal(a, b) for a, b in zip(final, final_untested))
    for step in range(1, 7):
        weights = [decay ** (step - k) for k in range(1, step + 1)]
        for index, value in enumerate(seen[step]):
            expected = sum(w * values[index] for w, values in zip(weights, raw)) / sum(weights)
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(final, seen[6]))
    assert not all(torch.equal(a, b) for a, b in zip(final, raw[-1]))


def test_compact_finetune_weighs_the_rate_estimate(sample: dict) -> None:
    """The compact finetune's loss adds ``rate_weight`` × the codec's bits per coded Gaussian:
    the same steps with the layout's weight leave fewer bytes of AC codes in the file than
    with weight 0. Seed and official have no rate model and no weight (CODEC.md §7)."""
    scene = sample["scene"]
    schedule = LAYOUTS["compact"].finetune_schedule
    assert schedule.rate_weight > 0
    for name in ("seed", "official"):
        assert LAYOUTS[name].finetune_schedule.rate_weight == 0
    codec, state, params = _prepared(sample, scene.getTrainCameras())
    assert codec.simulate_with_rate(state, params)[1] is None

    def finetuned(rate_weight: float) -> tuple[int, float]:
        codec, state, params = _prepared(sample, scene.getTrainCameras(), layout="compact",
                                         n_block=None, codebook_size=None)
        state.layout = dataclasses.replace(
            state.layout, finetune_schedule=dataclasses.replace(schedule,
                                                                rate_weight=rate_weight))
        finetune(codec, state, params, scene.getTrainCameras(), PIPE, torch.zeros(3),
                 iterations=30, test_iterations=[], on_test=lambda step: None, quiet=True)
        parts = codec.encode(state, params).part_bytes()
        with torch.no_grad():
            bits = float(codec.simulate_with_rate(state, params)[1])
        return sum(parts[group] for group in state.layout.raht), bits

    with_rate, without = finetuned(schedule.rate_weight), finetuned(0.0)
    assert with_rate[0] < without[0] and with_rate[1] < without[1]


@pytest.mark.parametrize("layout", ["seed", "compact"])
def test_first_finetune_step_moves_by_the_scheduled_rates(sample: dict, layout: str) -> None:
    """Adam's first step moves every trained value that has a gradient by exactly its rate:
    each tensor by FINETUNE_LRS × the layout's schedule at step 1, no more and no less."""
    scene = sample["scene"]
    flags = {} if layout == "seed" else {"layout": "compact", "n_block": None,
                                          "codebook_size": None}
    codec, state, params = _prepared(sample, scene.getTrainCameras(), **flags)
    trained = codec.trainable(state, params)[0]
    before = {name: tensor.detach().clone() for name, tensor in trained.items()}
    after_first: dict[str, torch.Tensor] = {}
    finetune(codec, state, params, scene.getTrainCameras(), PIPE, torch.zeros(3),
             iterations=4, test_iterations=[1],
             on_test=lambda step: after_first.update(
                 {name: tensor.detach().clone() for name, tensor in trained.items()}),
             quiet=True)
    for name, value in before.items():
        moved = (after_first[name] - value).abs()
        rate = FINETUNE_LRS[name] * state.layout.finetune_schedule.factor(name, 1, 4)
        assert int((moved > 0).sum()) > 0, name
        torch.testing.assert_close(moved[moved > 0], torch.full_like(moved[moved > 0], rate),
                                   rtol=1e-3, atol=0, msg=name)


@pytest.mark.slow
def test_what_you_train_is_what_you_ship(sample: dict, tmp_path: Path) -> None:
    """After a finetune save, load_npz decodes the evaluation-mode simulation, and renders
    of the decoded model equal ft_render; evaluation never moves the ranges."""
    scene = sample["scene"]
    codec, state, params = _prepared(sample, scene.getTrainCameras())
    background = torch.zeros(3)
    saved: dict[int, dict] = {}

    def on_test(step: int) -> float:
        before = {k: v.clone() for k, v in state.quantizer.state_dict().items()}
        result = evaluate_codec(codec, state, params, scene.getTestCameras(), PIPE, background)
        after = state.quantizer.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        saved[step] = save(state, params, tmp_path / f"iteration_{step}")
        return result.psnr

    finetune(codec, state, params, scene.getTrainCameras(), PIPE, background, iterations=6,
             test_iterations=[6], on_test=on_test, generator=torch.Generator().manual_seed(0),
             quiet=True)
    assert list(saved) == [6]
    state.eval()
    decoded = GaussianModel(1)
    decoded.load_npz(tmp_path / "iteration_6" / "bins.zip")
    with torch.no_grad():
        simulated = codec.simulate(state, params)
        decoded_attrs = {"means": decoded.get_xyz, "quats": decoded.get_rotation,
                         "scales": decoded.get_scaling, "opacities": decoded.get_opacity[:, 0],
                         "shs": decoded.get_features}
        for name, value in decoded_attrs.items():
            torch.testing.assert_close(value, simulated[name], rtol=0, atol=1e-5, msg=name)
        for camera in scene.getTestCameras()[:3]:
            shipped = render(camera, decoded, PIPE, background)["render"]
            trained = ft_render(camera, simulated, PIPE, background)["render"]
            assert float((shipped - trained).abs().mean()) <= 1e-5
    # the folder holds the same bitstream as the archive
    from_folder = GaussianModel(1)
    from_folder.load_npz(tmp_path / "iteration_6" / "bins")
    assert all(torch.equal(from_folder.params[k], decoded.params[k]) for k in decoded.params)


@pytest.mark.slow
def test_same_seed_same_bytes_and_finetune_improves(sample: dict, tmp_path: Path) -> None:
    """Identical bins.zip for the same input and seed (at 0 and after finetuning), one
    report and one results.csv row per save, and the finetune raises the test PSNR."""
    scene = sample["scene"]
    cfg = _cfg(finetune_iterations=20, finetune_test_iterations=[0, 5, 20])
    runs = []
    for name in ("a", "b"):
        runs.append(compress_model(_model(sample), scene, resolve_compression(cfg, scene=True),
                                   PIPE, tmp_path / name, quiet=True, seed=3).reports)
    for k in (0, 5, 20):
        archives = [(tmp_path / name / "compression" / "seed" / f"iteration_{k}" / "bins.zip")
                    .read_bytes() for name in ("a", "b")]
        assert archives[0] == archives[1], k
    reports = runs[0]
    assert [r["iteration"] for r in reports] == [0, 5, 20]
    assert all(r["eval_split"] == "test" and r["lpips"] is None for r in reports)
    # finetune time up to each save, evaluations and saves excluded: it grows with the steps
    seconds = [r["finetune_seconds"] for r in reports]
    assert 0 <= seconds[0] < seconds[1] < seconds[2], seconds
    assert reports[-1]["psnr"] > reports[0]["psnr"] + 0.1
    rows = (tmp_path / "a" / "compression" / "results.csv").read_text().splitlines()
    assert rows[0] == "Submethod,PSNR,SSIM,LPIPS,Size [Bytes],#Gaussians"
    assert [r.split(",")[0] for r in rows[1:]] == ["seed_0", "seed_5", "seed_20"]
    assert list((tmp_path / "a" / "compression" / "seed").glob("events.out.tfevents*"))


@pytest.mark.slow
def test_lsq_official_finetune_moves_steps_and_codebook(sample: dict, tmp_path: Path) -> None:
    scene = sample["scene"]
    codec, state, params = _prepared(sample, scene.getTrainCameras(), layout="official",
                                     quantizer="lsq")
    steps = [state.quantizer.step.detach().clone(), state.direct_quantizer.step.detach().clone()]
    codebook = state.codebook.detach().clone()
    f_rest = params["f_rest"].detach().clone()
    finetune(codec, state, params, scene.getTrainCameras(), PIPE, torch.zeros(3), iterations=4,
             test_iterations=[], on_test=lambda step: None, quiet=True)
    assert not torch.equal(state.quantizer.step, steps[0])
    assert not torch.equal(state.direct_quantizer.step, steps[1])
    assert not torch.equal(state.codebook, codebook)
    assert torch.equal(params["f_rest"], f_rest)  # unused in the official layout
    info = save(state, params, tmp_path)
    decoded = GaussianModel(1)
    decoded.load_npz(info["path"])
    state.eval()
    with torch.no_grad():
        torch.testing.assert_close(decoded.get_features, codec.simulate(state, params)["shs"],
                                   rtol=0, atol=1e-5)


@pytest.mark.slow
def test_no_test_views_evaluates_on_training_views(sample: dict, tmp_path: Path) -> None:
    scene = sample["scene"]

    class TrainOnly:
        """The sample scene without its test split (a run without --eval)."""

        args = scene.args

        def getTrainCameras(self):
            return scene.getTrainCameras()

        def getTestCameras(self):
            return []

    reports = compress_model(_model(sample), TrainOnly(),
                             resolve_compression(_cfg(finetune_iterations=0), scene=True),
                             PIPE, tmp_path, quiet=True).reports
    assert [r["eval_split"] for r in reports] == ["train"] and reports[0]["psnr"] > 10


def test_without_scene_one_save_and_no_metrics(sample: dict, tmp_path: Path) -> None:
    reports = compress_model(_model(sample), None,
                             resolve_compression(_cfg(finetune_iterations=100), scene=False),
                             PIPE, tmp_path, quiet=True).reports
    assert len(reports) == 1 and reports[0]["iteration"] == 0
    assert reports[0]["psnr"] is None and reports[0]["eval_split"] is None
    assert reports[0]["finetune_seconds"] is None
    assert (tmp_path / "compression" / "seed" / "iteration_0" / "bins.zip").is_file()
