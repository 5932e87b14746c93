"""Densification units: clone, split, prune and opacity reset keep parameters, optimizer and
strategy state aligned; the optimizer and learning-rate set-up of 3DGS."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arguments import OptimizationParams
from scene.gaussian_model import PARAM_NAMES, GaussianModel
from scene.ply import read_ply
from scene.strategy import (DefaultStrategy, StepInfo, clone_gaussians, remove_gaussians,
                            reset_opacity, split_gaussians)
from training.optim import create_optimizer, position_lr_schedule
from tests._optim import adam_after_random_steps
from utils.general_utils import build_rotation


@pytest.fixture(scope="module")
def pretrained_rows(shared_data) -> dict[str, np.ndarray]:
    """The first 200 Gaussians of the pretrained PLY, raw values by parameter name."""
    arrays = read_ply(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply")
    return {name: np.ascontiguousarray(arrays[name][:200], np.float32) for name in PARAM_NAMES}


@pytest.fixture
def trained(pretrained_rows) -> tuple[GaussianModel, torch.optim.Adam, dict[str, torch.Tensor]]:
    """200 real Gaussians with two Adam steps of distinct moments and random statistics."""
    model = GaussianModel(3)
    model.set_params({name: torch.from_numpy(v.copy()) for name, v in pretrained_rows.items()})
    gen = torch.Generator().manual_seed(0)
    optimizer = adam_after_random_steps(model.params, gen)
    strategy = DefaultStrategy()
    state = strategy.initialize_state(model.num_gaussians)
    for key in state:
        state[key] = torch.rand(model.num_gaussians, generator=gen)
    return model, optimizer, state


def _snapshot(model, optimizer, state):
    params = {n: p.detach().clone() for n, p in model.params.items()}
    moments = {g["name"]: {k: v.clone() for k, v in optimizer.state[g["params"][0]].items()}
               for g in optimizer.param_groups}
    return params, moments, {k: v.clone() for k, v in state.items()}


def _assert_aligned(model, optimizer, state):
    """Every optimizer group points at the model's parameter, and every row count agrees."""
    n = model.num_gaussians
    for group in optimizer.param_groups:
        (param,) = group["params"]
        assert param is model.params[group["name"]]
        for key in ("exp_avg", "exp_avg_sq"):
            if optimizer.state[param]:
                assert optimizer.state[param][key].shape == param.shape
    assert all(v.shape == (n,) for v in state.values())


def test_optimizer_groups_and_rates():
    model = GaussianModel(3)
    model.set_params({n: torch.zeros(4, *model.row_shape(n)) for n in PARAM_NAMES})
    opt = OptimizationParams()
    optimizer = create_optimizer(model.params, opt, spatial_lr_scale=3.0)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"xyz": 1.6e-4 * 3.0, "f_dc": 2.5e-3, "f_rest": 2.5e-3 / 20,
                                 "opacity": 0.025, "scaling": 5e-3, "rotation": 1e-3})
    assert optimizer.defaults["eps"] == 1e-15
    schedule = position_lr_schedule(opt, 3.0)
    assert schedule(0) == pytest.approx(1.6e-4 * 3.0)
    assert schedule(30_000) == pytest.approx(1.6e-6 * 3.0)
    assert schedule(15_000) == pytest.approx(math.sqrt(1.6e-4 * 1.6e-6) * 3.0)  # log-linear
    assert schedule(60_000) == pytest.approx(1.6e-6 * 3.0)


def test_remove_keeps_rows_and_moments(trained):
    model, optimizer, state = trained
    before = _snapshot(model, optimizer, state)
    mask = torch.zeros(model.num_gaussians, dtype=torch.bool)
    mask[[0, 5, 17, 199]] = True
    remove_gaussians(model.params, optimizer, state, mask)
    _assert_aligned(model, optimizer, state)
    assert model.num_gaussians == 196
    params, moments, stats = before
    for name, p in model.params.items():
        torch.testing.assert_close(p.detach(), params[name][~mask], rtol=0, atol=0)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizer.state[p][key], moments[name][key][~mask])
        assert optimizer.state[p]["step"] == moments[name]["step"]
    for key, value in state.items():
        torch.testing.assert_close(value, stats[key][~mask])


def test_clone_appends_copies_with_zero_moments(trained):
    model, optimizer, state = trained
    params, moments, stats = _snapshot(model, optimizer, state)
    mask = torch.zeros(model.num_gaussians, dtype=torch.bool)
    mask[[3, 4, 100]] = True
    clone_gaussians(model.params, optimizer, state, mask)
    _assert_aligned(model, optimizer, state)
    assert model.num_gaussians == 203
    for name, p in model.params.items():
        torch.testing.assert_close(p.detach()[:200], params[name], rtol=0, atol=0)
        torch.testing.assert_close(p.detach()[200:], params[name][mask], rtol=0, atol=0)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizer.state[p][key][:200], moments[name][key])
            assert not optimizer.state[p][key][200:].any()
    for key, value in state.items():
        torch.testing.assert_close(value[:200], stats[key])
        assert not value[200:].any()


def test_split_replaces_selected_by_two_smaller_samples(trained):
    model, optimizer, state = trained
    params, moments, stats = _snapshot(model, optimizer, state)
    mask = torch.zeros(model.num_gaussians, dtype=torch.bool)
    mask[[1, 50, 51, 150]] = True
    split_gaussians(model.params, optimizer, state, mask, generator=torch.Generator().manual_seed(1))
    _assert_aligned(model, optimizer, state)
    assert model.num_gaussians == 200 - 4 + 8
    survivors = model.num_gaussians - 8
    for name, p in model.params.items():
        torch.testing.assert_close(p.detach()[:survivors], params[name][~mask], rtol=0, atol=0)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizer.state[p][key][:survivors],
                                       moments[name][key][~mask])
            assert not optimizer.state[p][key][survivors:].any()
    new = {n: p.detach()[survivors:] for n, p in model.params.items()}
    parents = {n: v[mask].repeat(2, *([1] * (v.dim() - 1))) for n, v in params.items()}
    for name in ("f_dc", "f_rest", "opacity", "rotation"):
        torch.testing.assert_close(new[name], parents[name], rtol=0, atol=0)
    parent_scales = parents["scaling"].exp()
    torch.testing.assert_close(new["scaling"].exp(), parent_scales / 1.6)
    # Offsets expressed in each parent's own frame and units are a standard normal sample.
    local = (build_rotation(parents["rotation"]).transpose(1, 2)
             @ (new["xyz"] - parents["xyz"])[..., None])[..., 0] / parent_scales
    assert local.abs().max() < 6 and local.abs().mean() > 0.2
    for key, value in state.items():
        torch.testing.assert_close(value[:survivors], stats[key][~mask])
        assert not value[survivors:].any()


def test_reset_opacity_clamps_and_zeroes_only_opacity_moments(trained):
    model, optimizer, state = trained
    params, moments, _ = _snapshot(model, optimizer, state)
    reset_opacity(model.params, optimizer, max_opacity=0.01)
    _assert_aligned(model, optimizer, state)
    opacity = model.get_opacity.detach()
    expected = torch.sigmoid(params["opacity"]).clamp(max=0.01)
    torch.testing.assert_close(opacity, expected)
    assert not optimizer.state[model.params["opacity"]]["exp_avg"].any()
    torch.testing.assert_close(optimizer.state[model.params["xyz"]]["exp_avg"],
                               moments["xyz"]["exp_avg"])


def _fake_render_pkg(n: int, grads: torch.Tensor, radii: torch.Tensor) -> dict:
    points = torch.zeros(n, 3, requires_grad=True)
    points.grad = torch.cat([grads[:, None].expand(n, 2) / math.sqrt(2), torch.zeros(n, 1)], 1)
    return {"viewspace_points": points, "visibility_filter": radii > 0, "radii": radii}


def test_refine_selects_clone_split_prune(trained):
    """One densification step on hand-set statistics: each decision hits exactly its rows."""
    model, optimizer, _ = trained
    extent = 1.0
    n = model.num_gaussians
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, reset_every=10)
    state = strategy.initialize_state(n)
    log_scales = torch.full((n, 3), math.log(0.005))  # small: <= 0.01 * extent
    log_scales[100:, 0] = math.log(0.05)  # large
    opacity = torch.full((n, 1), 2.0)
    opacity[[7, 150], 0] = -10.0  # below min_opacity
    model.set_params({"scaling": log_scales, "opacity": opacity})
    optimizer = create_optimizer(model.params, OptimizationParams(), extent)
    grads = torch.zeros(n)
    grads[[1, 2, 7, 101, 150]] = 1e-3  # above the 2e-4 threshold
    radii = torch.ones(n, dtype=torch.int32)
    radii[[60, 160]] = 50  # huge on screen: pruned only after the first opacity reset
    xyz_before = model.params["xyz"].detach().clone()

    info = StepInfo(_fake_render_pkg(n, grads, radii), extent, 0.0,
                    torch.Generator().manual_seed(0))
    strategy.step_post_backward(model.params, optimizer, state, 1, info)
    _assert_aligned(model, optimizer, state)
    # clone 1, 2, 7 (+3); split 101, 150 (+4 children, -2 parents); prune by opacity 7, its
    # clone and the two children of 150 (-4). Step 1 is before the first reset: the wide-on-
    # screen rows 60 and 160 stay.
    assert model.num_gaussians == n + 3 + 4 - 2 - 4
    assert not state["count"].any()  # statistics restart after each refinement
    xyz = model.params["xyz"].detach()
    kept = torch.ones(n, dtype=torch.bool)
    kept[[7, 101, 150]] = False
    num_kept = int(kept.sum())
    torch.testing.assert_close(xyz[:num_kept], xyz_before[kept], rtol=0, atol=0)
    torch.testing.assert_close(xyz[num_kept:num_kept + 2], xyz_before[[1, 2]], rtol=0, atol=0)
    assert (model.get_opacity > 0.5).all()

    # After the first reset (step > reset_every): prune 20+ px on screen and > 0.1 * extent.
    m = model.num_gaussians
    log_scales = model.params["scaling"].detach().clone()
    log_scales[10] = math.log(0.5)
    model.set_params({"scaling": log_scales})
    optimizer = create_optimizer(model.params, OptimizationParams(), extent)
    radii = torch.ones(m, dtype=torch.int32)
    radii[[60, 140]] = 50
    xyz_before = model.params["xyz"].detach().clone()
    info = StepInfo(_fake_render_pkg(m, torch.zeros(m), radii), extent, 0.0)
    strategy.step_post_backward(model.params, optimizer, state, 11, info)
    _assert_aligned(model, optimizer, state)
    kept = torch.ones(m, dtype=torch.bool)
    kept[[10, 60, 140]] = False
    torch.testing.assert_close(model.params["xyz"].detach(), xyz_before[kept], rtol=0, atol=0)
