"""gsplat backend (CUDA): ``gsplat.rasterization`` with the settings of RENDERING.md."""
from __future__ import annotations

import torch

from gaussian_renderer._result import EPS2D, NEAR_PLANE, TILE_SIZE, RenderResult


class _ScreenGradTap(torch.autograd.Function):
    """Identity on ``means`` that hands a captured d loss / d means2d to ``screen_offset``.

    gsplat projects inside ``rasterization()``, so the zero offset cannot be added to its pixel
    means. A hook on ``meta["means2d"]`` stores their gradient; the backward of this node, which
    runs after gsplat's projection backward, returns it as the offset's gradient.
    """

    @staticmethod
    def forward(ctx, means: torch.Tensor, screen_offset: torch.Tensor, store: dict) -> torch.Tensor:
        ctx.store = store
        ctx.offset_shape = screen_offset.shape
        return means.view_as(means)

    @staticmethod
    def backward(ctx, grad_means: torch.Tensor):
        grad_offset = ctx.store.pop("grad", None)
        if grad_offset is None:
            grad_offset = grad_means.new_zeros(ctx.offset_shape)
        return grad_means, grad_offset, None


def rasterize_gsplat(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [N, D] or [N, K, 3]
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    sh_degree: int | None = None,
    background: torch.Tensor | None = None,  # [D]
    screen_offset: torch.Tensor | None = None,  # [N, 2]
) -> RenderResult:
    """Render with gsplat (packed=False, classic mode, eps2d 0.3, near 0.01, 16-pixel tiles).

    Same arguments and result as ``gaussian_renderer.torch_backend.rasterize_torch``; tensors
    must be on CUDA. gsplat is imported here so the package stays optional.
    """
    from gsplat import rasterization

    store: dict[str, torch.Tensor] = {}
    tap = screen_offset is not None and screen_offset.requires_grad
    if tap:
        means = _ScreenGradTap.apply(means, screen_offset, store)
    image, alpha, meta = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmat[None],
        K[None],
        width,
        height,
        near_plane=NEAR_PLANE,
        eps2d=EPS2D,
        sh_degree=sh_degree,
        packed=False,
        tile_size=TILE_SIZE,
        backgrounds=None if background is None else background[None],
        rasterize_mode="classic",
    )
    means2d = meta["means2d"]  # [1, N, 2], the tensor the compositing used
    if tap and means2d.requires_grad:
        means2d.register_hook(lambda grad: store.__setitem__("grad", grad[0]))
    radii = meta["radii"][0]  # gsplat 1.5: [N, 2] per axis; older releases: [N]
    visible = (radii > 0).all(dim=-1) if radii.dim() == 2 else radii > 0
    radii = radii.max(dim=-1).values if radii.dim() == 2 else radii
    radii = torch.where(visible, radii, torch.zeros_like(radii)).to(torch.int32)
    return RenderResult(
        image=image[0].permute(2, 0, 1),
        alpha=alpha[0].permute(2, 0, 1),
        radii=radii,
        means2d=torch.where(visible[:, None], means2d[0], torch.zeros_like(means2d[0])),
        depths=torch.where(visible, meta["depths"][0], torch.zeros_like(meta["depths"][0])),
    )
