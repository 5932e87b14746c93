"""gsplat (CUDA) against our torch backend on the same inputs: RENDERING.md's tolerances.

Skipped without CUDA, without gsplat, or when gsplat's JIT kernels do not build.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from gaussian_renderer import _gsplat_kernels_error, rasterize, render
from tests._raster_scenes import FakeModel, camera, intrinsics, look_transform, random_scene

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def device() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    reason = _gsplat_kernels_error()
    if reason is not None:
        pytest.skip(reason)
    return torch.device("cuda")


def _render_both(scene: dict, viewmat, K, width, height, sh_degree, background, device):
    outs = {}
    for backend in ("gsplat", "torch"):
        leaves = {k: v.to(device).requires_grad_(True) for k, v in scene.items()}
        bg = background.to(device).requires_grad_(True)
        out = rasterize(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
                        viewmat.to(device), K.to(device), width, height, sh_degree=sh_degree, background=bg,
                        backend=backend)
        g = torch.Generator().manual_seed(1)
        cot_image = torch.randn(out.image.shape, generator=g).to(device)
        cot_alpha = torch.randn(out.alpha.shape, generator=g).to(device)
        ((out.image * cot_image).sum() + (out.alpha * cot_alpha).sum()).backward()
        grads = {k: v.grad.detach().cpu() for k, v in leaves.items()}
        grads["background"] = bg.grad.detach().cpu()
        outs[backend] = (out, grads)
    return outs


def _assert_agree(a: torch.Tensor, b: torch.Tensor) -> None:
    diff = (a.detach().double() - b.detach().double()).abs().flatten().cpu()
    assert diff.mean() < 1e-5, f"mean |Δ| {diff.mean():.3g}"
    assert diff.quantile(0.999) < 1e-4, f"99.9th pct |Δ| {diff.quantile(0.999):.3g}"
    assert diff.max() < 0.02, f"max |Δ| {diff.max():.3g}"


@pytest.mark.parametrize("seed,sh_degree", [(0, 3), (1, None), (2, 3)])
def test_gsplat_and_torch_backends_agree(device, seed, sh_degree):
    scene = random_scene(2000, seed=seed, sh_degree=sh_degree)
    width, height = 96, 72
    viewmat, K = look_transform(seed), intrinsics(width, height, shift=(4.5, -3.0))
    outs = _render_both(scene, viewmat, K, width, height, sh_degree, torch.tensor([0.1, 0.4, 0.7]), device)
    (gs, gs_grads), (ours, our_grads) = outs["gsplat"], outs["torch"]
    _assert_agree(ours.image, gs.image)
    _assert_agree(ours.alpha, gs.alpha)
    assert (ours.radii.cpu() != gs.radii.cpu()).float().mean() < 0.005
    both = (ours.radii > 0) & (gs.radii > 0)
    torch.testing.assert_close(ours.means2d[both], gs.means2d[both], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ours.depths[both], gs.depths[both])
    for name, ref in gs_grads.items():
        # Gradients: float32 sums in different orders, plus the rare threshold flip.
        rel = (our_grads[name] - ref).norm() / ref.norm().clamp_min(1e-12)
        assert rel < 1e-3, f"{name}: relative gradient difference {rel:.3g}"


def test_viewspace_gradient_agrees_between_backends(device):
    scene = {k: v.to(device) for k, v in random_scene(1000, seed=4).items()}
    width, height = 80, 64
    cam = camera(width, height, look_transform(4).to(device), intrinsics(width, height).to(device))
    target = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    grads = {}
    for backend in ("gsplat", "torch"):
        out = render(cam, FakeModel(scene), SimpleNamespace(backend=backend), torch.zeros(3, device=device))
        ((out["render"] - target) ** 2).mean().backward()
        grads[backend] = out["viewspace_points"].grad.cpu()
    rel = (grads["torch"] - grads["gsplat"]).norm() / grads["gsplat"].norm()
    assert grads["gsplat"].abs().max() > 0 and rel < 1e-3, f"relative difference {rel:.3g}"


def test_auto_backend_uses_gsplat_on_cuda(device):
    scene = {k: v.to(device) for k, v in random_scene(500, seed=6).items()}
    K = intrinsics(64, 48).to(device)
    args = (*scene.values(), torch.eye(4, device=device), K, 64, 48)
    auto = rasterize(*args, sh_degree=3, backend="auto")
    explicit = rasterize(*args, sh_degree=3, backend="gsplat")
    assert torch.equal(auto.image, explicit.image)
