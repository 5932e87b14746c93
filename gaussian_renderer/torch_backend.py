"""Pure-PyTorch tile rasterizer with gsplat's CUDA semantics (RENDERING.md), any device.

Pipeline, mirroring gsplat's ops:
1. ``project_gaussians``: EWA projection with the clamped Jacobian, 0.3 low-pass, culling and
   opacity-aware footprint radii (plain autograd ops, O(N)).
2. ``plan_tiles``: (tile, Gaussian) intersection pairs, per tile front to back by depth, ties by
   index (no gradient).
3. ``_RasterizeTiles``: compositing with a hand-written backward. Pairs are processed in
   depth-rank chunks over all live tiles at once: a chunk evaluates α on the tiles' 16×16
   pixels as a [tiles, 256, chunk] batch, gets the transmittance with one cumulative product,
   and drops tiles whose pixels have all stopped (T ≤ 1e-4). The backward replays the same
   chunks front to back; the "colour still to come behind pair k" term is the pixel's total
   minus a running prefix sum, so no reverse pass or per-pair storage is needed, and the
   per-pair sums over pixels come from six tile-local moments (one small matmul).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F

from gaussian_renderer._result import (
    ALPHA_MAX,
    ALPHA_MIN,
    EPS2D,
    FAR_PLANE,
    MAX_EXTENT,
    NEAR_PLANE,
    T_MIN,
    TILE_SIZE,
    RenderResult,
)
from utils.general_utils import build_rotation
from utils.sh_utils import eval_sh

_TILE_PIXELS = TILE_SIZE * TILE_SIZE
# Elements of one [tiles, chunk, 256] batch: bounds the memory of a chunk (~16 MB per float32
# buffer, about a dozen buffers live at once).
CHUNK_ELEMENTS = 1 << 22
MAX_CHUNK = 32
_LOG_ALPHA_MAX = math.log(ALPHA_MAX) - 1e-6  # pairs at or above may be clamped
_LOG_ALPHA_FLOOR = math.log(ALPHA_MIN) - 4.0  # log α below this is skipped anyway


class Projection(NamedTuple):
    """Per-Gaussian screen-space quantities ([N, ...]); culled rows hold finite junk."""

    means2d: torch.Tensor  # [N, 2] pixels
    conics: torch.Tensor  # [N, 3] (A, B, C) of the inverse 2D covariance
    depths: torch.Tensor  # [N] camera-space z
    radii: torch.Tensor  # [N, 2] int32 footprint radii (x, y), 0 when culled
    visible: torch.Tensor  # [N] bool


def project_gaussians(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    viewmat: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
) -> Projection:
    """EWA-project 3D Gaussians as gsplat's ``fully_fused_projection`` (classic, eps2d 0.3).

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] wxyz rotations (normalized here).
        scales: [N, 3] activated scales.
        opacities: [N] activated opacities (culling and footprint only).
        viewmat: [4, 4] world→camera, OpenCV axes.
        K: [3, 3] pinhole intrinsics.
        width, height: image size in pixels.

    Returns:
        Projection; means2d, conics and depths are differentiable.
    """
    rot_w2c, t_w2c = viewmat[:3, :3], viewmat[:3, 3]
    p_cam = means @ rot_w2c.T + t_w2c
    x, y, z = p_cam.unbind(-1)
    in_depth = (z >= NEAR_PLANE) & (z <= FAR_PLANE)
    z_safe = torch.where(in_depth, z, torch.ones_like(z))

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    margin_x, margin_y = 0.3 * (0.5 * width / fx), 0.3 * (0.5 * height / fy)
    x_n, y_n = x / z_safe, y / z_safe
    x_clamped = torch.minimum(torch.maximum(x_n, -(cx / fx + margin_x)), (width - cx) / fx + margin_x)
    y_clamped = torch.minimum(torch.maximum(y_n, -(cy / fy + margin_y)), (height - cy) / fy + margin_y)

    # Camera-space square root of the covariance: Σ_cam = M Mᵀ with M = R_w2c R_q S.
    m_cam = rot_w2c @ (build_rotation(quats) * scales[:, None, :])
    # Rows of J M with J = [[fx/z, 0, -fx x'/z], [0, fy/z, -fy y'/z]] (x', y' clamped).
    jm_x = (fx / z_safe)[:, None] * (m_cam[:, 0] - x_clamped[:, None] * m_cam[:, 2])
    jm_y = (fy / z_safe)[:, None] * (m_cam[:, 1] - y_clamped[:, None] * m_cam[:, 2])
    cov_a = (jm_x * jm_x).sum(-1) + EPS2D
    cov_b = (jm_x * jm_y).sum(-1)
    cov_c = (jm_y * jm_y).sum(-1) + EPS2D
    det = cov_a * cov_c - cov_b * cov_b
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([cov_c / det_safe, -cov_b / det_safe, cov_a / det_safe], dim=-1)
    means2d = torch.stack([fx * x_n + cx, fy * y_n + cy], dim=-1)

    with torch.no_grad():
        opacity_ok = opacities >= ALPHA_MIN
        extent = torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_MIN) / ALPHA_MIN))
        extent = extent.clamp_max(MAX_EXTENT)
        radius_x = torch.ceil(extent * cov_a.sqrt())
        radius_y = torch.ceil(extent * cov_c.sqrt())
        mx, my = means2d.unbind(-1)
        on_screen = (
            (mx + radius_x > 0) & (mx - radius_x < width) & (my + radius_y > 0) & (my - radius_y < height)
        )
        visible = in_depth & det_ok & opacity_ok & (radius_x > 0) & (radius_y > 0) & on_screen
        radii = torch.stack([radius_x, radius_y], dim=-1).where(visible[:, None], 0).to(torch.int32)
    return Projection(means2d, conics, z, radii, visible)


def sh_colors(
    shs: torch.Tensor,  # [N, K, 3]
    sh_degree: int,
    means: torch.Tensor,  # [N, 3]
    viewmat: torch.Tensor,  # [4, 4]
) -> torch.Tensor:
    """View-dependent colour: SH along normalize(mean - camera centre), + 0.5, clamped ≥ 0.

    Returns:
        [N, 3] colours.
    """
    rot_w2c, t_w2c = viewmat[:3, :3], viewmat[:3, 3]
    cam_center = -(rot_w2c.T @ t_w2c)
    dirs = F.normalize(means - cam_center, dim=-1)
    return (eval_sh(sh_degree, shs, dirs) + 0.5).clamp_min(0.0)


@dataclass
class TilePlan:
    """(tile, Gaussian) pairs of one image, grouped by tile, front to back inside a tile."""

    gaussian_ids: torch.Tensor  # [V] visible Gaussians, front to back (indices into N)
    pair_ranks: torch.Tensor  # [P] per pair, index into gaussian_ids, sorted by (tile, depth)
    tile_starts: torch.Tensor  # [T] first pair of each tile
    tile_counts: torch.Tensor  # [T] pairs per tile
    tiles_x: int
    tiles_y: int
    width: int
    height: int

    @property
    def num_tiles(self) -> int:
        return self.tiles_x * self.tiles_y


@torch.no_grad()
def plan_tiles(
    means2d: torch.Tensor,  # [N, 2]
    radii: torch.Tensor,  # [N, 2]
    depths: torch.Tensor,  # [N]
    visible: torch.Tensor,  # [N]
    width: int,
    height: int,
) -> TilePlan:
    """Intersect footprints with 16×16 tiles (gsplat's ``isect_tiles``, without the bit packing)."""
    device = means2d.device
    tiles_x, tiles_y = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    visible_ids = visible.nonzero().squeeze(1)
    gaussian_ids = visible_ids[torch.sort(depths[visible_ids], stable=True).indices]

    center = means2d[gaussian_ids] / TILE_SIZE
    half = radii[gaussian_ids].to(means2d.dtype) / TILE_SIZE
    limit = torch.tensor([tiles_x, tiles_y], device=device)
    lo = torch.floor(center - half).long().clamp(min=0).minimum(limit)
    hi = torch.ceil(center + half).long().clamp(min=0).minimum(limit)
    span = hi - lo  # [V, 2]
    counts = span[:, 0] * span[:, 1]

    ranks = torch.repeat_interleave(torch.arange(len(gaussian_ids), device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(ranks), device=device) - first[ranks]
    row_len = span[ranks, 0]
    tile_ids = (lo[ranks, 1] + local // row_len) * tiles_x + lo[ranks, 0] + local % row_len
    tile_sorted, order = torch.sort(tile_ids, stable=True)
    tile_counts = torch.bincount(tile_sorted, minlength=tiles_x * tiles_y)
    return TilePlan(
        gaussian_ids=gaussian_ids,
        pair_ranks=ranks[order],
        tile_starts=torch.cumsum(tile_counts, 0) - tile_counts,
        tile_counts=tile_counts,
        tiles_x=tiles_x,
        tiles_y=tiles_y,
        width=width,
        height=height,
    )


def _to_tiles(image: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """[D, H, W] image → [T, 256, D] tile layout (zero padding past the border)."""
    d = image.shape[0]
    pad_h, pad_w = plan.tiles_y * TILE_SIZE - plan.height, plan.tiles_x * TILE_SIZE - plan.width
    padded = F.pad(image, (0, pad_w, 0, pad_h))
    tiled = padded.reshape(d, plan.tiles_y, TILE_SIZE, plan.tiles_x, TILE_SIZE)
    return tiled.permute(1, 3, 2, 4, 0).reshape(plan.num_tiles, _TILE_PIXELS, d)


def _from_tiles(tiles: torch.Tensor, plan: TilePlan) -> torch.Tensor:
    """[T, 256, D] tile layout → [D, H, W] image."""
    d = tiles.shape[2]
    image = tiles.reshape(plan.tiles_y, plan.tiles_x, TILE_SIZE, TILE_SIZE, d).permute(4, 0, 2, 1, 3)
    image = image.reshape(d, plan.tiles_y * TILE_SIZE, plan.tiles_x * TILE_SIZE)
    return image[:, : plan.height, : plan.width]


class _Chunk(NamedTuple):
    """n live tiles × B consecutive depth ranks, laid out pixel-major: [n, 256, B]."""

    tiles: torch.Tensor  # [n] tile ids
    ranks: torch.Tensor  # [n, B] index into the front-to-back arrays
    offset_x: torch.Tensor  # [n, B] mean x - tile centre x (pixels)
    offset_y: torch.Tensor  # [n, B] mean y - tile centre y
    alpha: torch.Tensor  # [n, 256, B] α after the 0.999 clamp and the 1/255 skip (0 = skipped)
    trans: torch.Tensor  # [n, 256, B] T in front of each pair
    weight: torch.Tensor  # [n, 256, B] α T, 0 past the pixel's stop
    live_before: torch.Tensor  # [n, 256] T entering the chunk, 0 for stopped pixels
    stop_tail: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # pixels stopping here: (row, pixel, [m, B] past-stop mask)
    opaque: tuple[torch.Tensor, torch.Tensor]  # (row, column) of pairs whose α may hit the 0.999 clamp


class _Sweep:
    """Front-to-back chunked compositing; iterating yields the chunks in order.

    Only pairs with opacity ≥ 0.999 can reach the α clamp and only pixels whose T crosses 1e-4
    inside a chunk need a stop mask, so both rules run on small index subsets.
    After iteration, ``final_transmittance`` is the [T, 256] T left at each pixel.
    """

    def __init__(
        self,
        plan: TilePlan,
        means2d: torch.Tensor,  # [V, 2]
        conics: torch.Tensor,  # [V, 3]
        log_opacities: torch.Tensor,  # [V]
    ) -> None:
        self.plan, self.means2d, self.conics, self.log_opacities = plan, means2d, conics, log_opacities
        dtype, device = means2d.dtype, means2d.device
        half = TILE_SIZE / 2
        tile_ids = torch.arange(plan.num_tiles, device=device)
        self.tile_cx = (tile_ids % plan.tiles_x * TILE_SIZE + half).to(dtype)  # [T]
        self.tile_cy = (tile_ids // plan.tiles_x * TILE_SIZE + half).to(dtype)
        self.local = torch.arange(TILE_SIZE, device=device, dtype=dtype) + 0.5 - half  # [16] pixel centres
        cols = self.tile_cx[:, None, None] + self.local  # [T, 1, 16]
        rows = self.tile_cy[:, None, None] + self.local[:, None]  # [T, 16, 1]
        inside = (cols < plan.width) & (rows < plan.height)
        # T of pixels still compositing; 0 once stopped (and for padding pixels).
        self.live_t = inside.reshape(plan.num_tiles, _TILE_PIXELS).to(dtype)
        self.stopped_t = torch.ones_like(self.live_t)  # T at the stop, for stopped pixels

    @property
    def final_transmittance(self) -> torch.Tensor:
        return torch.where(self.live_t > 0, self.live_t, self.stopped_t)

    def __iter__(self) -> Iterator[_Chunk]:
        plan = self.plan
        num_pairs = len(plan.pair_ranks)
        if num_pairs == 0:
            return
        device = self.means2d.device
        start, max_count = 0, int(plan.tile_counts.max())
        while start < max_count:
            alive = (plan.tile_counts > start) & (self.live_t > 0).any(dim=1)
            tiles = alive.nonzero().squeeze(1)
            if len(tiles) == 0:
                return
            size = max(1, min(MAX_CHUNK, CHUNK_ELEMENTS // (len(tiles) * _TILE_PIXELS)))
            depth_rank = start + torch.arange(size, device=device)
            in_tile = depth_rank < plan.tile_counts[tiles, None]
            pair = (plan.tile_starts[tiles, None] + depth_rank).clamp_max(num_pairs - 1)
            yield self._composite(tiles, plan.pair_ranks[pair], in_tile)
            start += size

    def _composite(self, tiles: torch.Tensor, ranks: torch.Tensor, in_tile: torch.Tensor) -> _Chunk:
        n, size = ranks.shape
        mean = self.means2d[ranks]  # [n, B, 2]
        offset_x = mean[..., 0] - self.tile_cx[tiles, None]
        offset_y = mean[..., 1] - self.tile_cy[tiles, None]
        dx = offset_x[:, None, :] - self.local[:, None]  # [n, 16 cols, B]
        dy = offset_y[:, None, :] - self.local[:, None]  # [n, 16 rows, B]
        conic_a, conic_b, conic_c = self.conics[ranks].unbind(-1)  # [n, B]
        log_o = self.log_opacities[ranks].masked_fill(~in_tile, -math.inf)
        # log(o e^{-σ}) = log o - ½ C dy² - ½ A dx² - B dx dy on [n, row, col, B].
        row_term = log_o[:, None, :] - 0.5 * conic_c[:, None, :] * dy.square()
        col_term = -0.5 * conic_a[:, None, :] * dx.square()
        alpha = row_term[:, :, None, :] + col_term[:, None, :, :]
        alpha.addcmul_((conic_b[:, None, :] * dy)[:, :, None, :], dx[:, None, :, :], value=-1.0)
        # The floor keeps exp away from denormals (very slow on CPUs); anything that low is skipped.
        alpha = alpha.clamp_min_(_LOG_ALPHA_FLOOR).exp_().view(n, _TILE_PIXELS, size)
        F.threshold_(alpha, ALPHA_MIN, 0.0)
        opaque = (log_o >= _LOG_ALPHA_MAX).nonzero(as_tuple=True)
        alpha[opaque[0], :, opaque[1]] = alpha[opaque[0], :, opaque[1]].clamp_max(ALPHA_MAX)

        # cum[..., k] = T after k pairs, starting from the T the pixel entered with.
        live_before = self.live_t[tiles]
        cum = alpha.new_empty(n, _TILE_PIXELS, size + 1)
        cum[..., 0] = live_before
        torch.sub(1.0, alpha, out=cum[..., 1:])
        cum.cumprod_(-1)
        trans, t_last = cum[..., :-1], cum[..., -1]
        weight = alpha * trans
        # Pixels whose T drops to ≤ 1e-4 inside the chunk stop before that pair.
        rows, pix = ((live_before > 0) & (t_last <= T_MIN)).nonzero(as_tuple=True)
        n_used = (cum[rows, pix, 1:] > T_MIN).sum(-1)
        past_stop = torch.arange(size, device=ranks.device) >= n_used[:, None]
        weight[rows, pix] = weight[rows, pix].masked_fill_(past_stop, 0.0)
        self.stopped_t[tiles[rows], pix] = cum[rows, pix, n_used]
        live_after = t_last.clone()
        live_after[rows, pix] = 0.0
        self.live_t[tiles] = live_after
        return _Chunk(tiles, ranks, offset_x, offset_y, alpha, trans, weight, live_before, (rows, pix, past_stop), opaque)


def _moment_basis(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[6, 256] tile-local polynomials (1, u, w, u², w², u w) at the pixel centres (u right, w down)."""
    local = torch.arange(TILE_SIZE, device=device, dtype=dtype) + 0.5 - TILE_SIZE / 2
    w, u = torch.meshgrid(local, local, indexing="ij")
    u, w = u.reshape(-1), w.reshape(-1)
    return torch.stack([torch.ones_like(u), u, w, u * u, w * w, u * w])


class _RasterizeTiles(torch.autograd.Function):
    """Differentiable compositing of projected Gaussians (gsplat's ``rasterize_to_pixels``)."""

    @staticmethod
    def forward(
        ctx,
        means2d: torch.Tensor,  # [V, 2] front to back
        conics: torch.Tensor,  # [V, 3]
        colors: torch.Tensor,  # [V, D]
        opacities: torch.Tensor,  # [V]
        background: torch.Tensor,  # [D]
        plan: TilePlan,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_opacities = opacities.log()
        sweep = _Sweep(plan, means2d, conics, log_opacities)
        accum_t = means2d.new_zeros(plan.num_tiles, colors.shape[1], _TILE_PIXELS)  # Σ c α T
        for chunk in sweep:
            contrib = torch.bmm(colors[chunk.ranks].transpose(1, 2), chunk.weight.transpose(1, 2))  # [n, D, 256]
            accum_t.index_add_(0, chunk.tiles, contrib)
        accum = accum_t.transpose(1, 2)  # [T, 256, D]
        final_t = sweep.final_transmittance
        image_tiles = accum + final_t[..., None] * background
        ctx.plan = plan
        ctx.save_for_backward(means2d, conics, colors, opacities, log_opacities, background, accum, final_t)
        alpha = _from_tiles((1.0 - final_t)[..., None], plan)
        return _from_tiles(image_tiles, plan), alpha

    @staticmethod
    def backward(ctx, grad_image: torch.Tensor, grad_alpha: torch.Tensor):
        means2d, conics, colors, opacities, log_opacities, background, accum, final_t = ctx.saved_tensors
        plan: TilePlan = ctx.plan
        g_img = _to_tiles(grad_image, plan)  # [T, 256, D]
        g_alpha = _to_tiles(grad_alpha, plan)[..., 0]  # [T, 256]
        # Per pixel: Σ_j (g·c_j) α_j T_j over all pairs, and the part through the final T
        # (background and alpha output); "behind pair k" = total - prefix(k) + final part.
        total = (g_img * accum).sum(dim=-1)
        behind_final = final_t * (g_img @ background - g_alpha)
        prefix = torch.zeros_like(total)
        basis = _moment_basis(means2d.dtype, means2d.device)

        v_means2d, v_conics = torch.zeros_like(means2d), torch.zeros_like(conics)
        v_colors, v_log_o = torch.zeros_like(colors), torch.zeros_like(opacities)
        for chunk in _Sweep(plan, means2d, conics, log_opacities):
            flat = chunk.ranks.reshape(-1)
            g_chunk = g_img[chunk.tiles]  # [n, 256, D]
            v_colors.index_add_(0, flat, torch.bmm(g_chunk.transpose(1, 2), chunk.weight).transpose(1, 2).flatten(0, 1))
            # v_exp = dL/d log(o e^{-σ}) = α T (g·c) - α/(1-α) · (colour behind + final-T terms).
            v_exp = torch.bmm(g_chunk, colors[chunk.ranks].transpose(1, 2)).mul_(chunk.weight)  # [n, 256, B]
            behind = torch.cumsum(v_exp, dim=-1)
            base = (total - prefix + behind_final)[chunk.tiles].masked_fill_(chunk.live_before == 0, 0.0)
            prefix[chunk.tiles] += behind[..., -1]
            torch.sub(base[..., None], behind, out=behind)
            odds = torch.sub(1.0, chunk.alpha)
            torch.div(chunk.alpha, odds, out=odds)
            v_exp.addcmul_(behind, odds, value=-1.0)
            rows, pix, past_stop = chunk.stop_tail
            v_exp[rows, pix] = v_exp[rows, pix].masked_fill_(past_stop, 0.0)
            o_rows, o_cols = chunk.opaque
            clamped = chunk.alpha[o_rows, :, o_cols] >= ALPHA_MAX
            v_exp[o_rows, :, o_cols] = v_exp[o_rows, :, o_cols].masked_fill_(clamped, 0.0)

            # Σ_pixels v·{1, dx, dy, dx², dy², dx dy} from six tile-local moments (dx = offset - u).
            m0, mu, mw, muu, mww, muw = torch.matmul(basis, v_exp).unbind(1)  # [n, B] each
            ox, oy = chunk.offset_x, chunk.offset_y
            s_x, s_y = ox * m0 - mu, oy * m0 - mw
            s_xx = ox * (ox * m0 - 2.0 * mu) + muu
            s_yy = oy * (oy * m0 - 2.0 * mw) + mww
            s_xy = ox * (oy * m0 - mw) - oy * mu + muw
            conic_a, conic_b, conic_c = conics[chunk.ranks].unbind(-1)
            v_mean = torch.stack([-(conic_a * s_x + conic_b * s_y), -(conic_c * s_y + conic_b * s_x)], -1)
            v_conic = torch.stack([-0.5 * s_xx, -s_xy, -0.5 * s_yy], -1)
            v_means2d.index_add_(0, flat, v_mean.reshape(-1, 2))
            v_conics.index_add_(0, flat, v_conic.reshape(-1, 3))
            v_log_o.index_add_(0, flat, m0.reshape(-1))
        v_background = (g_img * final_t[..., None]).sum(dim=(0, 1))
        return v_means2d, v_conics, v_colors, v_log_o / opacities, v_background, None

def rasterize_torch(
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
    """Render with the pure-PyTorch tile rasterizer (inputs already validated).

    Args:
        means, quats, scales, opacities: [N, 3], [N, 4] wxyz, [N, 3] activated, [N] activated.
        colors: [N, D] precomputed colours, or [N, K, 3] SH coefficients when sh_degree is set.
        viewmat: [4, 4] world→camera (OpenCV). K: [3, 3] intrinsics.
        width, height: image size in pixels.
        sh_degree: SH degree to evaluate, None for precomputed colours.
        background: [D] colour behind the Gaussians, None for black.
        screen_offset: [N, 2] zeros added to the pixel means inside the graph; its gradient is
            d loss / d means2d (pixels).

    Returns:
        RenderResult with image [D, H, W].
    """
    proj = project_gaussians(means, quats, scales, opacities, viewmat, K, width, height)
    rgb = colors if sh_degree is None else sh_colors(colors, sh_degree, means, viewmat)
    means2d = proj.means2d if screen_offset is None else proj.means2d + screen_offset
    plan = plan_tiles(means2d.detach(), proj.radii, proj.depths.detach(), proj.visible, width, height)
    if background is None:
        background = rgb.new_zeros(rgb.shape[-1])
    ids = plan.gaussian_ids
    image, alpha = _RasterizeTiles.apply(means2d[ids], proj.conics[ids], rgb[ids], opacities[ids], background, plan)
    visible = proj.visible
    return RenderResult(
        image=image,
        alpha=alpha,
        radii=proj.radii.max(dim=-1).values,
        means2d=torch.where(visible[:, None], means2d, torch.zeros_like(means2d)),
        depths=torch.where(visible, proj.depths, torch.zeros_like(proj.depths)),
    )
