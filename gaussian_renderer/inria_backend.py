"""inria backend (optional, CUDA): graphdeco's ``diff_gaussian_rasterization``.

Limits (RENDERING.md): α clamp 0.99, near plane 0.2, 3σ square footprint, SH up to degree 3,
three colour channels, and a principal point at the image centre only (a camera off centre by
more than half a pixel is refused). Alpha needs a second pass with white colours.
"""
from __future__ import annotations


import torch

from gaussian_renderer._result import RenderResult

_ZNEAR, _ZFAR = 0.01, 100.0


def _projection_matrix(tan_x: float, tan_y: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[4, 4] OpenGL-style projection of 3DGS (z mapped to [0, 1]), centred principal point."""
    proj = torch.zeros(4, 4, dtype=dtype, device=device)
    proj[0, 0], proj[1, 1] = 1.0 / tan_x, 1.0 / tan_y
    proj[3, 2] = 1.0
    proj[2, 2] = _ZFAR / (_ZFAR - _ZNEAR)
    proj[2, 3] = -(_ZFAR * _ZNEAR) / (_ZFAR - _ZNEAR)
    return proj


def rasterize_inria(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [N, 3] or [N, K, 3]
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    sh_degree: int | None = None,
    background: torch.Tensor | None = None,  # [3]
    screen_offset: torch.Tensor | None = None,  # [N, 2]
) -> RenderResult:
    """Render with graphdeco's rasterizer (same arguments and result as the torch backend).

    Raises:
        ValueError: principal point off centre by more than half a pixel.
    """
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    if abs(cx - width / 2) > 0.5 or abs(cy - height / 2) > 0.5:
        raise ValueError(
            f"inria backend needs a centred principal point: got (cx, cy) = ({cx:.2f}, {cy:.2f}) for a "
            f"{width}x{height} image; use backend='gsplat' or 'torch'"
        )
    from diff_gaussian_rasterization import GaussianRasterizationSettings, GaussianRasterizer

    tan_x, tan_y = width / (2 * fx), height / (2 * fy)
    world_view = viewmat.T.contiguous()  # 3DGS stores transposed (row-vector) matrices
    full_proj = (_projection_matrix(tan_x, tan_y, viewmat.dtype, viewmat.device) @ viewmat).T.contiguous()
    bg = background if background is not None else means.new_zeros(3)
    settings = dict(
        image_height=height,
        image_width=width,
        tanfovx=tan_x,
        tanfovy=tan_y,
        bg=bg,
        scale_modifier=1.0,
        viewmatrix=world_view,
        projmatrix=full_proj,
        sh_degree=0 if sh_degree is None else sh_degree,
        campos=torch.linalg.inv(viewmat)[:3, 3],
        prefiltered=False,
        debug=False,
    )
    # inria's means2D gradient is in NDC units (pixel × W/2); dividing the offset by that scale
    # makes the offset's own gradient the pixel gradient, as for the other backends.
    px_per_ndc = means.new_tensor([width / 2, height / 2])
    means2d_in = means.new_zeros(means.shape[0], 2) if screen_offset is None else screen_offset / px_per_ndc
    means2d_in = torch.cat([means2d_in, means2d_in.new_zeros(means.shape[0], 1)], dim=1)
    is_sh = sh_degree is not None

    def run(precomputed: torch.Tensor | None, background_color: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rasterizer = GaussianRasterizer(GaussianRasterizationSettings(**{**settings, "bg": background_color}))
        outputs = rasterizer(
            means3D=means,
            means2D=means2d_in,
            opacities=opacities[:, None],
            shs=colors if (is_sh and precomputed is None) else None,
            colors_precomp=precomputed if precomputed is not None else (None if is_sh else colors),
            scales=scales,
            rotations=quats,
        )
        return outputs[0], outputs[1]  # newer releases also return depth

    image, radii = run(None, bg)
    coverage, _ = run(torch.ones_like(means), torch.zeros_like(bg))
    p_cam = means @ viewmat[:3, :3].T + viewmat[:3, 3]
    visible = radii > 0
    z = p_cam[:, 2].clamp_min(_ZNEAR)
    means2d = torch.stack([fx * p_cam[:, 0] / z + cx, fy * p_cam[:, 1] / z + cy], -1)
    return RenderResult(
        image=image,
        alpha=coverage[:1],
        radii=radii.to(torch.int32),
        means2d=torch.where(visible[:, None], means2d, torch.zeros_like(means2d)),
        depths=torch.where(visible, p_cam[:, 2], torch.zeros_like(z)),
    )
