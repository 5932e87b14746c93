"""Rasterization: the torch backend against closed forms, RENDERING.md's rules, an independent
per-pixel float64 reference written here from the spec, and float64 finite differences."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gaussian_renderer import RenderResult, ft_render, rasterize, render
from gaussian_renderer.inria_backend import rasterize_inria
from tests._raster_scenes import FakeModel, camera, intrinsics, look_transform, random_scene
from utils.sh_utils import RGB2SH, SH2RGB, eval_sh, sh_basis


# ----------------------------------------------------------------------------------------------
# Independent reference: plain float64 numpy, loops over Gaussians, every pixel evaluated.
# ----------------------------------------------------------------------------------------------
def _ref_sh_basis(d: np.ndarray) -> np.ndarray:
    """Real SH basis, degree 3, for one unit direction (16,)."""
    x, y, z = d
    return np.array([
        0.28209479177387814,
        -0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x,
        1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
        0.31539156525252005 * (2 * z * z - x * x - y * y), -1.0925484305920792 * x * z,
        0.5462742152960396 * (x * x - y * y),
        -0.5900435899266435 * y * (3 * x * x - y * y), 2.890611442640554 * x * y * z,
        -0.4570457994644658 * y * (4 * z * z - x * x - y * y),
        0.3731763325901154 * z * (2 * z * z - 3 * x * x - 3 * y * y),
        -0.4570457994644658 * x * (4 * z * z - x * x - y * y), 1.445305721320277 * z * (x * x - y * y),
        -0.5900435899266435 * x * (x * x - 3 * y * y),
    ])


def _ref_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def reference_render(means, quats, scales, opacities, colors, viewmat, K, width, height, sh_degree=None,
                     background=None) -> dict[str, np.ndarray]:
    """RENDERING.md implemented directly: per-Gaussian projection, per-pixel front-to-back blending."""
    means, quats, scales, opacities, colors, viewmat, K = (
        np.asarray(a.detach().cpu(), dtype=np.float64) for a in (means, quats, scales, opacities, colors, viewmat, K)
    )
    bg = np.zeros(3) if background is None else np.asarray(background.cpu(), dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    cam_center = -rot.T @ trans
    n = len(means)
    radii, means2d, depths = np.zeros(n, dtype=np.int64), np.zeros((n, 2)), np.zeros(n)
    splats = []
    for i in range(n):
        x, y, z = rot @ means[i] + trans
        if z < 0.01:
            continue
        cov_world = _ref_rotmat(quats[i]) @ np.diag(scales[i] ** 2) @ _ref_rotmat(quats[i]).T
        cov_cam = rot @ cov_world @ rot.T
        tan_x, tan_y = width / (2 * fx), height / (2 * fy)
        tx = z * min((width - cx) / fx + 0.3 * tan_x, max(-(cx / fx + 0.3 * tan_x), x / z))
        ty = z * min((height - cy) / fy + 0.3 * tan_y, max(-(cy / fy + 0.3 * tan_y), y / z))
        jac = np.array([[fx / z, 0, -fx * tx / z**2], [0, fy / z, -fy * ty / z**2]])
        cov2d = jac @ cov_cam @ jac.T + 0.3 * np.eye(2)
        det = np.linalg.det(cov2d)
        if det <= 0 or opacities[i] < 1 / 255:
            continue
        extent = min(3.33, math.sqrt(2 * math.log(255 * opacities[i])))
        rx, ry = math.ceil(extent * math.sqrt(cov2d[0, 0])), math.ceil(extent * math.sqrt(cov2d[1, 1]))
        mx, my = fx * x / z + cx, fy * y / z + cy
        if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height or min(rx, ry) <= 0:
            continue
        if sh_degree is None:
            color = colors[i]
        else:
            d = means[i] - cam_center
            basis = _ref_sh_basis(d / np.linalg.norm(d))[: (sh_degree + 1) ** 2]
            color = np.maximum(basis @ colors[i][: len(basis)] + 0.5, 0.0)
        radii[i], means2d[i], depths[i] = max(rx, ry), (mx, my), z
        splats.append((z, i, mx, my, np.linalg.inv(cov2d), opacities[i], color))

    px, py = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    image, transmittance = np.zeros((3, height, width)), np.ones((height, width))
    done = np.zeros((height, width), dtype=bool)
    for _, _, mx, my, conic, opacity, color in sorted(splats, key=lambda s: (s[0], s[1])):
        dx, dy = mx - px, my - py
        sigma = 0.5 * (conic[0, 0] * dx**2 + conic[1, 1] * dy**2) + conic[0, 1] * dx * dy
        alpha = np.minimum(0.999, opacity * np.exp(-sigma))
        blend = (sigma >= 0) & (alpha >= 1 / 255) & ~done
        next_t = transmittance * (1 - alpha)
        stop = blend & (next_t <= 1e-4)
        done |= stop
        blend &= ~stop
        image += color[:, None, None] * np.where(blend, alpha * transmittance, 0.0)
        transmittance = np.where(blend, next_t, transmittance)
    return {
        "image": image + transmittance * bg[:, None, None],
        "alpha": 1 - transmittance[None],
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
    }


def assert_images_agree(actual: torch.Tensor, expected: np.ndarray) -> None:
    """RENDERING.md agreement: mean |Δ| < 1e-5, 99.9th percentile < 1e-4, max < 0.02."""
    diff = np.abs(actual.detach().cpu().double().numpy() - expected)
    assert diff.mean() < 1e-5, f"mean |Δ| {diff.mean():.3g}"
    assert np.percentile(diff, 99.9) < 1e-4, f"99.9th pct |Δ| {np.percentile(diff, 99.9):.3g}"
    assert diff.max() < 0.02, f"max |Δ| {diff.max():.3g}"


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------
def render_torch(scene: dict, viewmat, K, width, height, **kwargs) -> RenderResult:
    return rasterize(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                     viewmat, K, width, height, backend="torch", **kwargs)


def compare_with_reference(scene, viewmat, K, width, height, sh_degree, background=None) -> RenderResult:
    out = render_torch(scene, viewmat, K, width, height, sh_degree=sh_degree, background=background)
    ref = reference_render(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
                           viewmat, K, width, height, sh_degree=sh_degree, background=background)
    assert_images_agree(out.image, ref["image"])
    assert_images_agree(out.alpha, ref["alpha"])
    radii = out.radii.numpy()
    assert (radii != ref["radii"]).mean() < 0.005  # a ceil() may flip on a float32 rounding
    both = (radii > 0) & (ref["radii"] > 0)
    np.testing.assert_allclose(out.means2d.detach().numpy()[both], ref["means2d"][both], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out.depths.detach().numpy()[both], ref["depths"][both], rtol=1e-6)
    return out


# ----------------------------------------------------------------------------------------------
# Closed forms and rules
# ----------------------------------------------------------------------------------------------
def single_gaussian(z: float, scale: float, opacity: float, mean_xy=(0.0, 0.0), dtype=torch.float32):
    return {
        "means": torch.tensor([[mean_xy[0], mean_xy[1], z]], dtype=dtype),
        "quats": torch.tensor([[0.3, -0.2, 0.5, 0.1]], dtype=dtype),  # isotropic: rotation is irrelevant
        "scales": torch.full((1, 3), scale, dtype=dtype),
        "opacities": torch.tensor([opacity], dtype=dtype),
        "colors": torch.tensor([[0.9, 0.4, 0.1]], dtype=dtype),
    }


@pytest.mark.parametrize("opacity", [0.8, 0.2])
def test_isotropic_gaussian_matches_closed_form(opacity):
    width, height, z, scale = 40, 32, 2.0, 0.05
    K = torch.tensor([[50.0, 0, 20.0], [0, 50.0, 16.0], [0, 0, 1]])
    bg = torch.tensor([0.1, 0.2, 0.3])
    out = render_torch(single_gaussian(z, scale, opacity), torch.eye(4), K, width, height, background=bg)
    var = (50.0 * scale / z) ** 2 + 0.3  # J Σ Jᵀ at the optical axis + low-pass
    py, px = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    alpha = opacity * torch.exp(-0.5 * ((px - 20.0) ** 2 + (py - 16.0) ** 2) / var)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    expected = torch.tensor([0.9, 0.4, 0.1])[:, None, None] * alpha + (1 - alpha) * bg[:, None, None]
    torch.testing.assert_close(out.image, expected, rtol=0, atol=2e-6)
    torch.testing.assert_close(out.alpha[0], alpha, rtol=0, atol=2e-6)
    radius = math.ceil(min(3.33, math.sqrt(2 * math.log(255 * opacity))) * math.sqrt(var))
    assert out.radii.tolist() == [radius]
    torch.testing.assert_close(out.means2d, torch.tensor([[20.0, 16.0]]))
    torch.testing.assert_close(out.depths, torch.tensor([z]))


def test_alpha_is_clamped_at_0999():
    out = render_torch(single_gaussian(2.0, 2.0, 1.0), torch.eye(4), intrinsics(32, 32), 32, 32,
                       background=torch.ones(3))
    centre = out.image[:, 16, 16]
    torch.testing.assert_close(centre, 0.999 * torch.tensor([0.9, 0.4, 0.1]) + 0.001, rtol=0, atol=1e-6)
    assert out.alpha.max().item() == pytest.approx(0.999, abs=1e-7)


def test_transmittance_stops_before_the_gaussian_that_crosses_1e4():
    # Five flat opaque layers: α ≈ 0.9 at the centre pixel, so T goes 1, .1, .01, 1e-3, and the
    # fourth layer would bring it to 1e-4: compositing stops before it.
    layers = [single_gaussian(1.0 + k, 0.5 * (1.0 + k), 0.9) for k in range(5)]
    scene = {key: torch.cat([s[key] for s in layers]) for key in layers[0]}
    scene["colors"] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0], [0, 1.0, 1.0]])
    width = height = 16
    K = torch.tensor([[20.0, 0, 8.0], [0, 20.0, 8.0], [0, 0, 1]])
    out = render_torch(scene, torch.eye(4), K, width, height, background=torch.tensor([0.5, 0.5, 0.5]))
    ref = reference_render(*scene.values(), torch.eye(4), K, width, height, background=torch.tensor([0.5] * 3))
    alphas = [0.9 * math.exp(-0.5 * 2 * 0.5**2 / ((20 * 0.5) ** 2 + 0.3)) for _ in range(5)]  # pixel (8.5, 8.5)
    t, expected = 1.0, np.zeros(3)
    for a, c in zip(alphas, scene["colors"].numpy()):
        if t * (1 - a) <= 1e-4:
            break
        expected, t = expected + c * a * t, t * (1 - a)
    expected += 0.5 * t
    assert t > 1e-4 and t * (1 - alphas[3]) <= 1e-4  # the rule is exercised at the 4th layer
    np.testing.assert_allclose(ref["image"][:, 8, 8], expected, atol=1e-7)  # float32 quats: R Rᵀ ≈ I to 1e-8
    np.testing.assert_allclose(out.image[:, 8, 8].numpy(), expected, atol=2e-6)
    assert_images_agree(out.image, ref["image"])


def test_culling_rules():
    width = height = 32
    K = intrinsics(width, height)
    cases = {
        "behind the near plane": single_gaussian(0.009, 0.001, 0.9),
        "behind the camera": single_gaussian(-1.0, 0.1, 0.9),
        "opacity below 1/255": single_gaussian(2.0, 0.1, 0.0039),
        "off screen": single_gaussian(2.0, 0.01, 0.9, mean_xy=(3.0, 0.0)),
    }
    for name, scene in cases.items():
        out = render_torch(scene, torch.eye(4), K, width, height, background=torch.tensor([0.2, 0.3, 0.4]))
        assert out.radii.tolist() == [0], name
        assert torch.equal(out.image, torch.tensor([0.2, 0.3, 0.4])[:, None, None].expand(3, height, width)), name
        assert out.alpha.abs().max() == 0, name
    kept = render_torch(single_gaussian(0.011, 0.0005, 0.9), torch.eye(4), K, width, height)
    assert kept.radii.item() > 0 and kept.alpha.max() > 0.5


@pytest.mark.parametrize("n", [0, 5])
def test_empty_and_all_behind_camera_give_background(n):
    scene = random_scene(n, seed=1, sh_degree=None)
    scene["means"] = scene["means"] * torch.tensor([1.0, 1.0, -1.0])  # z < 0
    scene = {k: v.requires_grad_(True) for k, v in scene.items()}
    bg = torch.tensor([0.3, 0.6, 0.9], requires_grad=True)
    out = render_torch(scene, torch.eye(4), intrinsics(24, 20), 24, 20, background=bg)
    assert torch.equal(out.image.detach(), bg.detach()[:, None, None].expand(3, 20, 24))
    assert torch.equal(out.alpha.detach(), torch.zeros(1, 20, 24))
    assert out.radii.shape == (n,) and not out.radii.any()
    out.image.sum().backward()
    torch.testing.assert_close(bg.grad, torch.full((3,), 20.0 * 24.0))
    for tensor in scene.values():
        assert tensor.grad is None or not tensor.grad.any()


def test_principal_point_shifts_the_image():
    scene = random_scene(150, seed=2, sh_degree=None, log_scale=(-4.5, -3.0))
    width, height, shift = 48, 40, (5.0, -3.0)
    base = render_torch(scene, torch.eye(4), intrinsics(width, height), width, height)
    moved = render_torch(scene, torch.eye(4), intrinsics(width, height, shift=shift), width, height)
    both = (moved.radii > 0) & (base.radii > 0)
    assert both.sum() > 100
    torch.testing.assert_close(moved.means2d[both] - base.means2d[both], torch.tensor([shift]).expand(int(both.sum()), 2))
    # Pixel (x, y) of the base image is pixel (x + 5, y - 3) of the shifted one.
    diff = (moved.image[:, :-3, 5:] - base.image[:, 3:, :-5]).abs()
    assert diff.mean() < 1e-5 and diff.max() < 0.02


# ----------------------------------------------------------------------------------------------
# Against the per-pixel reference
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,sh_degree", [(0, 3), (1, None), (2, 1)])
def test_torch_backend_matches_reference_on_random_scenes(seed, sh_degree):
    scene = random_scene(300, seed=seed, sh_degree=sh_degree)
    if sh_degree == 1:
        scene["colors"] = scene["colors"][:, :4]
    width, height = 48, 40
    compare_with_reference(scene, look_transform(seed), intrinsics(width, height, shift=(3.5, -2.0)), width,
                           height, sh_degree, background=torch.tensor([0.2, 0.5, 0.8]))


def test_torch_backend_matches_reference_on_dense_opaque_scene():
    """Many overlapping near-opaque splats: exercises the 0.999 clamp and the T stop in every tile."""
    scene = random_scene(600, seed=5, sh_degree=None, log_scale=(-3.0, -1.5), opacity=(0.9, 1.0))
    compare_with_reference(scene, torch.eye(4), intrinsics(48, 40), 48, 40, None)


def test_torch_backend_matches_reference_on_pretrained_ply(shared_data):
    """A real trained 3DGS model (9,080 Gaussians, SH degree 3) seen from its capture origin."""
    plyfile = pytest.importorskip("plyfile")
    vertex = plyfile.PlyData.read(str(shared_data / "pretrained_ply" / "small_3dgs_sh3.ply"))["vertex"]

    def stack(names: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[n], dtype=np.float32) for n in names], -1))

    rest = stack([f"f_rest_{i}" for i in range(45)]).reshape(-1, 3, 15).transpose(1, 2)  # channel-major
    scene = {
        "means": stack(["x", "y", "z"]),
        "quats": stack([f"rot_{i}" for i in range(4)]),
        "scales": stack([f"scale_{i}" for i in range(3)]).exp(),
        "opacities": torch.sigmoid(stack(["opacity"])[:, 0]),
        "colors": torch.cat([stack([f"f_dc_{i}" for i in range(3)])[:, None], rest], 1),
    }
    width, height = 64, 48
    out = compare_with_reference(scene, torch.eye(4), intrinsics(width, height, focal_scale=1.0), width, height, 3,
                                 background=torch.ones(3))
    assert (out.radii > 0).sum() > 1000  # the view actually sees the model


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------
def tiny_scene_inputs(seed: int) -> dict[str, torch.Tensor]:
    scene = random_scene(5, seed=seed, sh_degree=3, dtype=torch.float64, log_scale=(-2.5, -1.8),
                         opacity=(0.3, 0.8))
    scene["means"] = scene["means"] * torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    scene["means"][:, 2] += 1.5  # well inside the view, 1.7-3.9 deep
    scene["colors"] = scene["colors"][:, :4]  # degree 1 keeps the finite differences few
    scene["viewmat"] = look_transform(seed, dtype=torch.float64)
    scene["background"] = torch.tensor([0.1, 0.7, 0.4], dtype=torch.float64)
    scene["screen_offset"] = torch.zeros(5, 2, dtype=torch.float64)
    return scene


def test_gradients_match_float64_finite_differences():
    seed = 3
    inputs = tiny_scene_inputs(seed)
    width, height = 24, 18
    K = intrinsics(width, height, shift=(1.5, -1.0), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    w_image, w_alpha = torch.randn(3, height, width, generator=g, dtype=torch.float64), torch.randn(
        1, height, width, generator=g, dtype=torch.float64)

    def loss(**x: torch.Tensor) -> torch.Tensor:
        out = rasterize(x["means"], x["quats"], x["scales"], x["opacities"], x["colors"], x["viewmat"], K, width,
                        height, sh_degree=1, background=x["background"], backend="torch",
                        screen_offset=x["screen_offset"])
        return (out.image * w_image).sum() + (out.alpha * w_alpha).sum()

    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    loss(**leaves).backward()
    assert render_torch(inputs, inputs["viewmat"], K, width, height, sh_degree=1).radii.gt(0).all()
    h = 1e-6
    for name, value in inputs.items():
        numeric = torch.zeros_like(value).reshape(-1)
        for i in range(value.numel()):
            plus, minus = value.clone().reshape(-1), value.clone().reshape(-1)
            plus[i] += h
            minus[i] -= h
            f_plus = loss(**{**inputs, name: plus.reshape(value.shape)})
            f_minus = loss(**{**inputs, name: minus.reshape(value.shape)})
            numeric[i] = (f_plus - f_minus) / (2 * h)
        analytic = leaves[name].grad.reshape(-1)
        assert numeric.abs().max() > 0, name
        torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-7 * numeric.abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")


def test_render_viewspace_gradient_is_ndc_scaled_pixel_gradient():
    scene = random_scene(200, seed=7)
    width, height = 48, 40
    viewmat, K = look_transform(7), intrinsics(width, height)
    model = FakeModel(scene)
    pipe = SimpleNamespace(backend="torch")
    bg = torch.tensor([0.0, 0.5, 1.0])
    out = render(camera(width, height, viewmat, K), model, pipe, bg)
    target = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    ((out["render"] - target) ** 2).mean().backward()

    offset = torch.zeros(200, 2, requires_grad=True)
    direct = render_torch(scene, viewmat, K, width, height, sh_degree=3, background=bg, screen_offset=offset)
    ((direct.image - target) ** 2).mean().backward()
    torch.testing.assert_close(out["render"], direct.image)
    torch.testing.assert_close(out["viewspace_points"].grad, offset.grad * torch.tensor([width / 2, height / 2]))
    assert out["viewspace_points"].grad[~out["visibility_filter"]].abs().max() == 0
    assert out["viewspace_points"].grad[out["visibility_filter"]].abs().max() > 0
    assert torch.equal(out["visibility_filter"], direct.radii > 0)
    # Every model parameter receives a gradient through render().
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.params.values())


def test_ft_render_renders_the_codec_simulation():
    scene = random_scene(120, seed=8)
    shifted = {"means": scene["means"] + 0.05, "quats": scene["quats"], "scales": scene["scales"] * 1.1,
               "opacities": scene["opacities"] * 0.9, "shs": scene["colors"].round(decimals=1)}
    model = FakeModel(scene)
    width, height = 32, 24
    cam, pipe = camera(width, height, torch.eye(4), intrinsics(width, height)), SimpleNamespace(backend="torch")
    out = ft_render(cam, shifted, pipe, torch.zeros(3))
    expected = rasterize(shifted["means"], shifted["quats"], shifted["scales"], shifted["opacities"], shifted["shs"],
                         torch.eye(4), intrinsics(width, height), width, height, sh_degree=3, backend="torch")
    torch.testing.assert_close(out["render"], expected.image)
    assert not torch.allclose(out["render"], render(cam, model, pipe, torch.zeros(3))["render"])


# ----------------------------------------------------------------------------------------------
# API edges and SH
# ----------------------------------------------------------------------------------------------
def test_unknown_backend_lists_the_available_ones():
    scene = single_gaussian(2.0, 0.1, 0.5)
    with pytest.raises(ValueError, match="unknown rasterizer backend 'vulkan'.*auto.*torch.*gsplat.*inria"):
        rasterize(*scene.values(), torch.eye(4), intrinsics(16, 16), 16, 16, backend="vulkan")


@pytest.mark.parametrize("bad,match", [
    ({"means": torch.zeros(1, 2)}, r"means must have shape \[\*, 3\]"),
    ({"quats": torch.zeros(2, 4)}, r"quats must have shape \[1, 4\]"),
    ({"opacities": torch.zeros(1, 1)}, r"opacities must have shape \[1\]"),
    ({"colors": torch.zeros(1, 5, 3)}, "pass sh_degree explicitly"),
    ({"viewmat": torch.eye(3)}, r"viewmat must have shape \[4, 4\]"),
])
def test_bad_shapes_raise_value_error(bad, match):
    args = {**single_gaussian(2.0, 0.1, 0.5), "viewmat": torch.eye(4)}
    args.update(bad)
    viewmat = args.pop("viewmat")
    with pytest.raises(ValueError, match=match):
        rasterize(*args.values(), viewmat, intrinsics(16, 16), 16, 16, backend="torch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal of a CUDA-only backend")
def test_cuda_backends_refuse_cpu_tensors_or_say_what_to_install():
    scene = single_gaussian(2.0, 0.1, 0.5)
    for backend in ("gsplat", "inria"):
        with pytest.raises((ValueError, ImportError), match=f"'{backend}' needs"):
            rasterize(*scene.values(), torch.eye(4), intrinsics(16, 16), 16, 16, backend=backend)


def test_inria_backend_refuses_an_off_centre_principal_point():
    scene = single_gaussian(2.0, 0.1, 0.5)
    with pytest.raises(ValueError, match="principal point"):
        rasterize_inria(*scene.values(), torch.eye(4), intrinsics(32, 32, shift=(0.6, 0.0)), 32, 32)


def test_sh_basis_is_orthonormal_and_rgb_round_trips():
    # Spherical Fibonacci points: a near-uniform quadrature of the sphere.
    n = 20000
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    dirs = torch.stack([(1 - z * z).sqrt() * phi.cos(), (1 - z * z).sqrt() * phi.sin(), z], -1)
    basis = sh_basis(3, dirs)
    gram = 4 * math.pi * basis.T @ basis / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-3, rtol=0)
    for k in range(10):
        np.testing.assert_allclose(basis[k].numpy(), _ref_sh_basis(dirs[k].numpy()), rtol=1e-12)
    rgb = torch.rand(7, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(SH2RGB(RGB2SH(rgb)), rgb)
    sh = RGB2SH(rgb)[:, None, :]
    torch.testing.assert_close(eval_sh(0, sh, dirs[:7].float()) + 0.5, rgb)
    with pytest.raises(ValueError, match="sh must be"):
        eval_sh(2, torch.zeros(3, 4, 3), dirs[:3])
