"""GaussianModel: initialisation from real COLMAP points, PLY I/O, activations, state, edits;
and the helpers of utils/general_utils.py."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from scene.colmap_loader import read_points3D_binary
from scene.gaussian_model import PARAM_NAMES, GaussianModel
from utils.general_utils import build_rotation, get_expon_lr_func, inverse_sigmoid
from utils.graphics_utils import BasicPointCloud

C0 = 0.28209479177387814  # degree-0 real SH constant, 1 / (2 sqrt(pi))


@pytest.fixture(scope="module")
def pretrained_ply(shared_data: Path) -> Path:
    return shared_data / "pretrained_ply" / "small_3dgs_sh3.ply"


@pytest.fixture(scope="module")
def statuette_pcd(shared_data: Path) -> BasicPointCloud:
    """The statuette's COLMAP points, plus a copy of points 0..9 and two more of point 0."""
    points = read_points3D_binary(shared_data / "statuette" / "sparse" / "0" / "points3D.bin")
    extra = [*range(10), 0, 0]
    xyz = np.concatenate([points.xyz, points.xyz[extra]])
    rgb = np.concatenate([points.rgb, points.rgb[extra]]) / 255.0
    return BasicPointCloud(xyz, rgb, np.zeros_like(xyz))


def _brute_force_log_scale(points: np.ndarray) -> np.ndarray:
    """log sqrt(max(mean sq. distance to the 3 nearest other points, 1e-7)), all pairs."""
    sq = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(sq, np.inf)
    nearest = np.sort(sq, axis=1)[:, :3]
    return np.log(np.sqrt(np.maximum(nearest.mean(axis=1), 1e-7)))


def test_create_from_pcd_matches_brute_force(statuette_pcd: BasicPointCloud):
    model = GaussianModel(3)
    model.create_from_pcd(statuette_pcd, spatial_lr_scale=4.25)
    n = len(statuette_pcd.points)
    assert model.num_gaussians == n and model.spatial_lr_scale == 4.25
    expected = _brute_force_log_scale(statuette_pcd.points)
    # Point 0 has three exact copies: its mean distance is 0 and hits the clamp.
    assert expected[0] == math.log(math.sqrt(1e-7)) and (expected[1:10] > expected[0]).all()
    np.testing.assert_array_equal(expected[1:10], expected[n - 11:n - 2])
    scaling = model.params["scaling"].detach().numpy()
    np.testing.assert_allclose(scaling, np.repeat(expected[:, None], 3, 1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.get_xyz.detach().numpy(), statuette_pcd.points, rtol=1e-7)
    np.testing.assert_allclose(model.get_opacity.detach().numpy(), 0.1, rtol=1e-6)
    np.testing.assert_allclose(model.get_features_dc.detach().numpy()[:, 0],
                               (statuette_pcd.colors - 0.5) / C0, rtol=1e-6, atol=1e-6)
    assert model.get_features_rest.shape == (n, 15, 3) and not model.get_features_rest.any()
    np.testing.assert_array_equal(model.get_rotation.detach().numpy(), np.tile([1, 0, 0, 0], (n, 1)))
    assert all(p.dtype == torch.float32 and p.requires_grad and p.is_leaf
               for p in model.params.values())


def test_create_from_pcd_rejects_bad_input():
    with pytest.raises(ValueError, match="points must be"):
        GaussianModel(0).create_from_pcd(BasicPointCloud(np.zeros((0, 3)), np.zeros((0, 3)),
                                                         np.zeros((0, 3))), 1.0)
    with pytest.raises(ValueError, match="colors must be"):
        GaussianModel(0).create_from_pcd(BasicPointCloud(np.zeros((4, 3)), np.zeros((3, 3)),
                                                         np.zeros((4, 3))), 1.0)


def test_load_save_round_trip_and_activations(pretrained_ply: Path, tmp_path: Path):
    model = GaussianModel(3)
    model.load_ply(pretrained_ply)
    assert model.active_sh_degree == 3 and model.num_gaussians == 9080
    model.save_ply(tmp_path / "out.ply")
    assert (tmp_path / "out.ply").read_bytes() == pretrained_ply.read_bytes()

    raw = PlyData.read(str(pretrained_ply))["vertex"].data
    opacity = raw["opacity"].astype(np.float64)
    np.testing.assert_allclose(model.get_opacity.detach().numpy()[:, 0], 1 / (1 + np.exp(-opacity)),
                               rtol=1e-6)
    np.testing.assert_allclose(model.get_scaling.detach().numpy()[:, 2],
                               np.exp(raw["scale_2"].astype(np.float64)), rtol=1e-6)
    quats = np.stack([raw[f"rot_{i}"] for i in range(4)], 1).astype(np.float64)
    np.testing.assert_allclose(model.get_rotation.detach().numpy(),
                               quats / np.linalg.norm(quats, axis=1, keepdims=True), atol=1e-6)
    features = model.get_features
    assert features.shape == (9080, 16, 3)
    np.testing.assert_array_equal(features[:, 0, 1].detach().numpy(), raw["f_dc_1"])
    np.testing.assert_array_equal(features[:, 1:, 2].detach().numpy(),
                                  np.stack([raw[f"f_rest_{30 + k}"] for k in range(15)], 1))

    # Covariance: R diag(s²) Rᵀ with R from an independent quaternion formula (numpy).
    w, x, y, z = (quats / np.linalg.norm(quats, axis=1, keepdims=True)).T
    rot = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                    2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                    2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1)
    rot = rot.reshape(-1, 3, 3)
    scales = 0.5 * model.get_scaling.detach().double().numpy()
    expected = rot @ (scales[:, :, None] ** 2 * rot.transpose(0, 2, 1))
    cov = model.get_covariance(0.5).detach().double().numpy()
    np.testing.assert_allclose(cov, expected, rtol=1e-4, atol=1e-7 * np.abs(expected).max())


def test_lower_degree_file_pads_and_higher_degree_is_refused(pretrained_ply: Path, tmp_path: Path):
    raw = PlyData.read(str(pretrained_ply))["vertex"].data
    keep = [n for n in raw.dtype.names if not n.startswith("f_rest")]
    keep[9:9] = [f"f_rest_{i}" for i in range(9)]  # degree 1: coefficients 1..3 of channel 0..2
    source = {n: raw[f"f_rest_{(int(n[7:]) // 3) * 15 + int(n[7:]) % 3}"] if n.startswith("f_rest")
              else raw[n] for n in keep}
    table = np.empty(len(raw), dtype=[(n, "<f4") for n in keep])
    for n in keep:
        table[n] = source[n]
    path = tmp_path / "deg1.ply"
    PlyData([PlyElement.describe(table, "vertex")]).write(str(path))

    model = GaussianModel(3)
    model.load_ply(path)
    rest = model.get_features_rest.detach().numpy()
    assert rest.shape == (len(raw), 15, 3) and not rest[:, 3:].any()
    for c in range(3):
        np.testing.assert_array_equal(rest[:, :3, c],
                                      np.stack([raw[f"f_rest_{c * 15 + k}"] for k in range(3)], 1))
    with pytest.raises(ValueError, match="more than sh_degree 0"):
        GaussianModel(0).load_ply(path)


def test_capture_restore_and_set_params(pretrained_ply: Path):
    model = GaussianModel(3)
    model.load_ply(pretrained_ply)
    model.spatial_lr_scale = 2.5
    state = model.capture_state()
    original = {k: v.clone() for k, v in state["params"].items()}

    n = 100
    model.set_params({name: torch.zeros(n, *model.row_shape(name)) for name in PARAM_NAMES})
    model.active_sh_degree = 1
    assert model.num_gaussians == n and state["params"]["xyz"].shape[0] == 9080

    other = GaussianModel(3)
    other.restore_state(state)
    model.restore_state(state)
    for m in (model, other):
        assert m.active_sh_degree == 3 and m.spatial_lr_scale == 2.5
        for name in PARAM_NAMES:
            assert torch.equal(m.params[name], original[name]) and m.params[name].requires_grad

    with pytest.raises(ValueError, match="max_sh_degree 3, model has 2"):
        GaussianModel(2).restore_state(state)
    with pytest.raises(ValueError, match="params/rotation"):
        model.restore_state({**state, "params": {k: v for k, v in state["params"].items()
                                                 if k != "rotation"}})


def test_set_params_contract():
    model = GaussianModel(1)
    kept = torch.nn.Parameter(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
    model.set_params({"xyz": kept, "opacity": torch.zeros(5, 1, requires_grad=True) * 2})
    assert model.params["xyz"] is kept
    assert isinstance(model.params["opacity"], torch.nn.Parameter) and model.params["opacity"].is_leaf
    assert model.row_shape("f_rest") == (3, 3)
    with pytest.raises(ValueError, match="'f_rest' must be \\[N, 3, 3\\]"):
        model.set_params({"f_rest": torch.zeros(5, 15, 3)})
    with pytest.raises(ValueError, match="disagree on the number of Gaussians"):
        model.set_params({"xyz": torch.zeros(5, 3), "scaling": torch.zeros(6, 3)})
    with pytest.raises(ValueError, match="unknown Gaussian parameter 'color'"):
        model.set_params({"color": torch.zeros(5, 3)})
    with pytest.raises(ValueError, match="sh_degree must be in 0..3"):
        GaussianModel(4)


def test_sh_degree_schedule_and_device_move():
    model = GaussianModel(2)
    assert model.active_sh_degree == 0 and model.num_gaussians == 0
    for expected in (1, 2, 2):
        model.oneupSHdegree()
        assert model.active_sh_degree == expected
    assert model.to("meta") is model
    assert all(p.device.type == "meta" for p in model.params.values())


def test_build_rotation_matches_reference(reference_dir: Path):
    vectors = np.load(reference_dir / "euler_vectors.npz")
    quats = torch.from_numpy(vectors["quat_wxyz"])
    np.testing.assert_allclose(build_rotation(quats).numpy(), vectors["rotation"], atol=1e-12)
    # Unnormalized input gives the same matrices.
    np.testing.assert_allclose(build_rotation(quats * 3.7).numpy(), vectors["rotation"], atol=1e-12)


def test_expon_lr_and_inverse_sigmoid():
    lr = get_expon_lr_func(1.6e-4, 1.6e-6, max_steps=30_000)
    assert lr(0) == pytest.approx(1.6e-4) and lr(30_000) == pytest.approx(1.6e-6)
    assert lr(15_000) == pytest.approx(math.sqrt(1.6e-4 * 1.6e-6))  # log-linear midpoint
    assert lr(60_000) == pytest.approx(1.6e-6) and lr(-1) == 0.0
    delayed = get_expon_lr_func(1.0, 0.01, lr_delay_steps=100, lr_delay_mult=0.1, max_steps=1000)
    assert delayed(0) == pytest.approx(0.1)
    assert delayed(50) == pytest.approx((0.1 + 0.9 * math.sin(math.pi / 4)) * 0.01 ** 0.05)
    assert delayed(500) == pytest.approx(0.1)
    assert get_expon_lr_func(0.0, 0.0)(10) == 0.0
    x = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    np.testing.assert_allclose(torch.sigmoid(inverse_sigmoid(x)).numpy(), x.numpy(), rtol=1e-12)
