"""The stages every codec family shares (CODEC.md §1), over plain tensors.

::

    params ──prepare_geometry──▶ Geometry     stages 1-5: importance → prune → voxelize + merge
                                              (sorted by voxel key) → the VQ columns' weights
           ──vector_quantize──▶ codebook      stage 5 (layouts with VQ)
    new_state(...)                            stage 6: the RAHT plan (the family sets up its
                                              quantizers on the state)
    reconstruct(state, params, codebook)      RAHT → the state's fake quantization → inverse
                                              RAHT, direct columns, VQ rows (raw parameters)

A codec family (``bins_codec``, ``compact_codec``) strings these together with its own
quantizers and container behind the :class:`codec.Codec` protocol. ``params`` is a plain dict
of raw tensors named like ``GaussianModel.params``: ``xyz`` [N, 3], ``f_dc`` [N, 1, 3],
``f_rest`` [N, (d+1)²-1, 3], ``opacity`` [N, 1] logits, ``scaling`` [N, 3] log-scales,
``rotation`` [N, 4] wxyz raw. Nothing here reads a ``GaussianModel``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from compression.codec import (CODED_PARAMS, CodecSettings, CodecState, Layout,
                               sh_degree_of_params)
from compression.importance import compute_importance, prune_mask
from compression.octree import (codes_to_keys, decode_positions, depth_for_scales, keys_to_codes,
                                merge_voxels, voxelize)
from compression.raht import build_raht
from compression.vq import assign, vq_kmeans
from utils.threads import available_cpus

logger = logging.getLogger(__name__)

#: rows per chunk of :func:`palette_rows`'s hash
_HASH_CHUNK_ROWS = 65536


def check_params(state: CodecState, params: Mapping[str, Tensor]) -> None:
    """Raises ValueError when ``params`` do not hold the state's N Gaussians."""
    n = params["opacity"].shape[0]
    if n != state.num_gaussians:
        raise ValueError(f"the parameters hold {n} Gaussians, the codec was prepared for "
                         f"{state.num_gaussians} (run prepare() on them)")


def coefficients(state: CodecState, params: Mapping[str, Tensor]) -> Tensor:
    """[N, C] RAHT coefficients of the layout's RAHT columns (row 0 = DC)."""
    return state.plan.forward(state.layout.columns(state.layout.raht, params))


def to_numpy(tensor: Tensor) -> np.ndarray:
    """A detached CPU numpy view of ``tensor``."""
    return tensor.detach().cpu().numpy()


def activated(raw: Mapping[str, Tensor], means: Tensor) -> dict[str, Tensor]:
    """Rasterizer inputs (``means, quats, scales, opacities, shs``) from raw parameters."""
    return {"means": means, "quats": raw["rotation"], "scales": torch.exp(raw["scaling"]),
            "opacities": torch.sigmoid(raw["opacity"]).reshape(-1),
            "shs": torch.cat([raw["f_dc"], raw["f_rest"]], dim=1)}


def reconstruct(state: CodecState, params: Mapping[str, Tensor], codebook: Optional[Tensor],
                *, exact: bool = False, coeffs: Optional[Tensor] = None) -> dict[str, Tensor]:
    """Raw parameters as the decoder would rebuild them, differentiably: the RAHT columns
    through the state's quantizer (``forward_coeffs``: training mode grows vanilla ranges),
    direct columns through the direct quantizer, VQ columns as rows of ``codebook`` (the
    codebook as the decoder reads it; None: the layout's VQ groups have no columns).
    ``exact``: the inverse RAHT and the columns' inverses in their reproducible forms (the
    decoder of an exactly decoding codec does the same). ``coeffs``: :func:`coefficients` of
    ``params`` when the caller has them already."""
    check_params(state, params)
    layout, d = state.layout, state.sh_degree
    if coeffs is None:
        coeffs = coefficients(state, params)
    rows = state.plan.inverse(state.quantizer.forward_coeffs(coeffs), exact=exact)
    raw = layout.params_from_columns(layout.raht, rows, d, exact=exact)
    if layout.direct:
        direct = state.direct_quantizer(layout.columns(layout.direct, params))
        raw.update(layout.params_from_columns(layout.direct, direct, d, exact=exact))
    if layout.vq:
        columns = (params["f_rest"].new_zeros((state.num_gaussians, 0)) if codebook is None
                   else codebook[state.vq_indices])
        raw.update(layout.params_from_columns(layout.vq, columns, d, exact=exact))
    return raw


def trainable(state: CodecState, params: Mapping[str, Tensor]
              ) -> tuple[dict[str, Tensor], list[Tensor]]:
    """What the finetune trains (``Layout.trains``): parameters by name, the state's own
    tensors (the VQ ``codebook``) by theirs (a codebook the model has none of, SH degree 0, is
    skipped); and the learned steps of LSQ quantizers (empty for the others)."""
    own = dict(state.named_parameters())
    tensors = {name: params[name] if name in params else own[name]
               for name in state.layout.trains if name in params or name in own}
    steps = [q.step for q in (state.quantizer, state.direct_quantizer)
             if getattr(q, "step", None) is not None]
    return tensors, steps


# ------------------------------------------------------------------------ stages 1-6

@dataclass
class Geometry:
    """The frozen geometry of a prepared model (stages 1-4) and what VQ weighs by.

    Attributes:
        params: raw parameters pruned, merged per voxel, in ascending voxel-key order, ``xyz``
            the voxel centres (detached).
        keys: [N] int64 ascending voxel keys.
        bbox: [6] bounding box of the kept Gaussians.
        depth: D.
        voxel_scores: [N] each voxel's importance (its members' total).
        num_input: Gaussians before pruning and merging.
        generator: the generator of the random choices (k-means goes on with it).
    """

    params: dict[str, Tensor]
    keys: Tensor
    bbox: Tensor
    depth: int
    voxel_scores: Tensor
    num_input: int
    generator: torch.Generator


@torch.no_grad()
def _merge(params: Mapping[str, Tensor], keep: Tensor, scores: Tensor, depth: int,
           settings: CodecSettings, generator: torch.Generator) -> Geometry:
    """Voxelize the kept Gaussians at ``depth`` and merge each voxel's members."""
    xyz = params["xyz"]
    if not bool(keep.all()):  # (nothing pruned: no copies, 1.5 GB at 6 M Gaussians)
        params, scores = {name: value[keep] for name, value in params.items()}, scores[keep]
    codes, bbox = voxelize(params["xyz"], depth)
    keys = codes_to_keys(codes, depth)
    unique_keys, merged = merge_voxels(
        keys, {name: params[name].detach() for name in CODED_PARAMS}, settings.oct_merge,
        importance=scores, generator=generator)
    n = int(unique_keys.shape[0])
    needed, rule = ((2, "2") if settings.n_block is None
                    else (settings.n_block + 1, "n_block + 1"))
    if n < needed:
        raise ValueError(f"after pruning and merging {n} Gaussians remain; the codec needs "
                         f"at least {rule} = {needed}")
    logger.info("codec: %d Gaussians → %d after pruning → %d voxels (depth %d)",
                xyz.shape[0], int(keep.sum()), n, depth)
    means = decode_positions(keys_to_codes(unique_keys, depth), bbox, depth)
    # A voxel's importance is the total of its members' (it weights the k-means).
    inverse = torch.unique(keys, sorted=True, return_inverse=True)[1]
    voxel_scores = scores.new_zeros(n).index_add_(0, inverse, scores)
    return Geometry({"xyz": means.to(xyz.dtype), **merged}, unique_keys, bbox, depth,
                    voxel_scores, int(xyz.shape[0]), generator)


def importance_of(params: Mapping[str, Tensor], cameras: Optional[Sequence], beta: float, *,
                  area: bool = False, backend: str = "auto") -> Tensor:
    """[N] importance of raw parameters (stage 1, ``importance.compute_importance``; ``area``:
    the layout's ``camera_free_area``)."""
    logger.info("codec: importance of %d Gaussians (%s)", params["xyz"].shape[0],
                f"{len(cameras)} views" if cameras else
                "from the opacities" + (" and areas" if area else "") + ", no views")
    return compute_importance(params["xyz"], params["rotation"], torch.exp(params["scaling"]),
                              torch.sigmoid(params["opacity"]), cameras, backend=backend,
                              beta=beta, area=area)


def prepare_geometry(params: Mapping[str, Tensor], cameras: Optional[Sequence],
                     settings: CodecSettings, generator: Optional[torch.Generator] = None, *,
                     backend: str = "auto", importance: Optional[Tensor] = None) -> Geometry:
    """Stages 1-4: importance, prune, voxelize + merge.

    Args:
        params: raw parameters of the trained model (on any device; everything stays there).
        cameras: training cameras for the importance (``world_to_cam``, ``K``, ``width``,
            ``height``); None or empty: importance from the opacities (times the mean projected
            areas where the layout's ``camera_free_area`` asks for it).
        settings: the resolved settings; an unset depth is chosen from the kept Gaussians'
            sizes (``octree.depth_for_scales`` with ``voxel_ratio``).
        generator: torch.Generator on the parameters' device for "rand" merging and k-means;
            None: a generator seeded with 0.
        backend: rasterizer backend for the importance.
        importance: [N] scores :func:`importance_of` gave for these parameters, cameras and
            ``imp_beta`` (a search that prepares one model many times renders them once);
            None: computed here.

    Raises:
        ValueError: nothing kept, or fewer than 2 voxels (n_block + 1 with block quantizers).
    """
    xyz = params["xyz"]
    if generator is None:
        generator = torch.Generator(device=xyz.device).manual_seed(0)
    scores = importance if importance is not None else importance_of(
        params, cameras, settings.imp_beta, area=settings.layout.camera_free_area,
        backend=backend)
    with torch.no_grad():
        keep = prune_mask(scores, settings.percent)
        if not bool(keep.any()):
            raise ValueError("importance pruning keeps no Gaussian (no view sees any, or "
                             "percent = 1)")
        depth = settings.depth if settings.depth is not None else depth_for_scales(
            xyz[keep], params["scaling"][keep], settings.voxel_ratio)
    return _merge(params, keep, scores, depth, settings, generator)


@torch.no_grad()
def vector_quantize(geometry: Geometry, settings: CodecSettings, size: int,
                    columns: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Stage 5: a ``size``-row k-means codebook of the layout's VQ columns (``columns`` when
    the caller has them already), weighted by the voxels' importance (every row's final
    assignment on all the CPUs this process may use): ``(codebook [K, F], indices [N],
    columns [N, F])``."""
    if columns is None:
        columns = vq_columns(geometry, settings)
    logger.info("codec: k-means codebook of %d entries for %d rows of %d values (%d steps of "
                "%d rows, then every row assigned)", size, columns.shape[0], columns.shape[1],
                settings.vq_steps, settings.vq_batch)
    codebook, indices = vq_kmeans(columns, geometry.voxel_scores, size, settings.vq_steps,
                                  settings.vq_batch, geometry.generator,
                                  workers=available_cpus())
    return codebook, indices, columns


def vq_columns(geometry: Geometry, settings: CodecSettings) -> Tensor:
    """The layout's VQ columns of the prepared Gaussians, [N, F] in column order."""
    layout = settings.layout
    return layout.columns(layout.vq, geometry.params)


@torch.no_grad()
def palette_rows(params: Mapping[str, Tensor], layout: Layout, limit: int) -> Optional[Tensor]:
    """The distinct rows [P, F] of the layout's VQ columns in ``params`` (ascending order)
    when there are at most ``limit`` of them, else None.

    A model another tool vector-quantized (PlayCanvas's SOG stores the SH as a palette of up
    to 65,536 rows) repeats a few rows many times; its palette is then a codebook that adds
    no error. The rows are told apart by a hash first, a chunk of rows at a time (no [N, F]
    temporaries: 1 to 2 GB each at 6 M rows); distinct hashes are distinct rows, so a model
    without a palette stops at the chunk where its hashes pass ``limit`` (a trained model at
    the first), and a model with one sorts at most ``limit`` + 65,536 hashes per chunk, not
    its rows.
    """
    hashes = weights = None
    for start in range(0, params["opacity"].shape[0], _HASH_CHUNK_ROWS):
        part = layout.columns(layout.vq, {name: value[start:start + _HASH_CHUNK_ROWS].detach()
                                          for name, value in params.items()})
        if weights is None:
            weights = torch.randint(1, 1 << 31, (part.shape[1],), dtype=torch.int64,
                                    generator=torch.Generator().manual_seed(0)).to(part.device)
            hashes = weights.new_zeros(0)
        part_hashes = (part.to(torch.float32).view(torch.int32).to(torch.int64) * weights).sum(1)
        hashes = torch.unique(torch.cat([hashes, part_hashes]))  # wraps: still a hash
        if int(hashes.shape[0]) > limit:
            return None
    rows = torch.unique(layout.columns(layout.vq, params).detach(), dim=0)
    return rows if rows.shape[0] <= limit else None


@torch.no_grad()
def palette_indices(columns: Tensor, palette: Tensor) -> Tensor:
    """[N] int64 row of ``palette`` [P, F] (distinct rows) nearest to each row of ``columns``.

    Rows found in the palette as they are (every Gaussian alone in its voxel) are matched by
    one sort of the P + N rows; only the others (voxels that merged Gaussians) are searched
    (``vq.assign``), so a 500,000-row model does not pay 500,000 × P distances.
    """
    together = torch.cat([palette.to(columns.dtype), columns])
    _, inverse = torch.unique(together, dim=0, return_inverse=True)
    owner = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.int64, device=columns.device)
    owner[inverse[:palette.shape[0]]] = torch.arange(palette.shape[0], device=columns.device)
    indices = owner[inverse[palette.shape[0]:]]
    missing = indices < 0
    if bool(missing.any()):
        indices[missing] = assign(columns[missing], palette.to(columns.dtype))
    return indices


def has_vq_columns(settings: CodecSettings, geometry: Geometry) -> bool:
    """Whether the layout vector-quantizes and its VQ groups have columns (f_rest: d > 0)."""
    layout = settings.layout
    return bool(layout.vq) and layout.width(layout.vq, sh_degree_of_params(geometry.params)) > 0


def new_state(layout: Layout, params: Mapping[str, Tensor], depth: int, keys: Tensor,
              bbox: Tensor, *, num_bits: Optional[int] = None,
              quantizer_kind: Optional[str] = None,
              codebook: Optional[Tensor] = None, vq_indices: Optional[Tensor] = None,
              num_input: Optional[int] = None, quality: int = 0,
              codebook_exponent: Optional[int] = None) -> CodecState:
    """Stage 6: a state over frozen voxels ``keys`` with their RAHT plan (quantizers unset)."""
    logger.info("codec: RAHT plan of %d voxels (depth %d)", keys.shape[0], depth)
    plan = build_raht(keys_to_codes(keys, depth), depth).to(keys.device)
    return CodecState(layout, sh_degree_of_params(params), depth, num_bits, quantizer_kind,
                      keys, bbox, plan, codebook, vq_indices, num_input=num_input,
                      quality=quality, codebook_exponent=codebook_exponent)
