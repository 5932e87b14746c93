"""The codec core (CODEC.md §1): the stage order over plain tensors; the only module that knows it.

::

    params ──prepare──▶ (state, params')      stages 1-6: importance → prune → voxelize + merge
       │                                      (sorted by voxel key) → VQ → RAHT plan → init_qas
       │  simulate(state, params')            RAHT → fake quantization → inverse RAHT (what the
       │                                      finetune renders; differentiable)
       │  encode(state, params') → Bitstream  stage 7: codes with the trained ranges
       │  save(state, params', dir)           stage 8: encode + the layout's container
       ▼
    decode(Bitstream) → params                stage 9: codes → inverse RAHT → raw parameters

``params`` is a plain dict of raw tensors named like ``GaussianModel.params``: ``xyz`` [N, 3],
``f_dc`` [N, 1, 3], ``f_rest`` [N, (d+1)²-1, 3], ``opacity`` [N, 1] logits, ``scaling``
[N, 3] log-scales, ``rotation`` [N, 4] wxyz raw. Nothing here reads a ``GaussianModel``
(``scene/gaussian_model.py`` holds the thin adapters ``init_qas``, ``qas``, ``save_npz``,
``load_npz``); what goes where is the layout record's business (``layouts.py``).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from compression.bitstream import Bitstream, read_bitstream, write_bitstream
from compression.importance import compute_importance, prune_mask
from compression.layouts import CODED_PARAMS, LAYOUTS, Layout, sh_degree_of_params
from compression.octree import (codes_to_keys, decode_positions, keys_to_codes, merge_voxels,
                                voxelize)
from compression.quantization import BlockQuantizer, storage_dtype
from compression.raht import RahtPlan, build_raht
from compression.settings import CompressionParams, resolve_settings
from compression.vq import vq_kmeans

logger = logging.getLogger(__name__)

#: the scalar quantizer of each ``Layout.quantizer_scheme``
QUANTIZER_SCHEMES: dict[str, type[BlockQuantizer]] = {"block": BlockQuantizer}
#: the writer of each ``Container.name`` (``read_bitstream`` tells containers apart by content)
CONTAINER_WRITERS = {"bins": write_bitstream}


class CodecState(nn.Module):
    """Everything the codec keeps for one prepared model (frozen geometry, RAHT, quantizers).

    Attributes:
        layout: the :class:`layouts.Layout`.
        sh_degree: d.
        depth: D.
        num_bits, quantizer_kind: b and "vanilla" | "lsq" of every quantizer.
        plan: the :class:`RahtPlan` of the frozen voxels.
        quantizer: the quantizer of the C RAHT columns (block scheme: C·B quantizers); None
            until :func:`init_qas`.
        direct_quantizer: the quantizer of the C' directly quantized columns (official: the 3
            log-scales), or None.
        codebook: layouts with VQ, [K, F] trainable codebook (nn.Parameter), else None.
    Buffers: ``keys`` [N] int64 ascending voxel keys, ``bbox`` [6] float64, ``means`` [N, 3]
    voxel centres (float32), ``vq_indices`` [N] int64 (layouts with VQ).

    ``train()``/``eval()`` switch the quantizers: training forwards grow the vanilla ranges,
    evaluation and saving never move them.
    """

    def __init__(self, layout: Layout, sh_degree: int, depth: int, num_bits: int,
                 quantizer_kind: str, keys: Tensor, bbox: Tensor, plan: RahtPlan,
                 codebook: Optional[Tensor] = None, vq_indices: Optional[Tensor] = None) -> None:
        super().__init__()
        self.layout, self.sh_degree, self.depth = layout, sh_degree, depth
        self.num_bits, self.quantizer_kind = num_bits, quantizer_kind
        self.plan = plan
        self.quantizer: Optional[BlockQuantizer] = None
        self.direct_quantizer: Optional[BlockQuantizer] = None
        self.codebook = None if codebook is None else nn.Parameter(codebook.detach().clone())
        self.register_buffer("keys", keys)
        self.register_buffer("bbox", bbox.to(torch.float64))
        self.register_buffer("means", decode_positions(keys_to_codes(keys, depth), bbox, depth)
                             .to(torch.float32))
        self.register_buffer("vq_indices", None if vq_indices is None else vq_indices.long())

    @property
    def num_gaussians(self) -> int:
        """N."""
        return int(self.keys.shape[0])


def _check_params(state: CodecState, params: Mapping[str, Tensor]) -> None:
    n = params["opacity"].shape[0]
    if n != state.num_gaussians:
        raise ValueError(f"the parameters hold {n} Gaussians, the codec was prepared for "
                         f"{state.num_gaussians} (run prepare() on them)")


def _coefficients(state: CodecState, params: Mapping[str, Tensor]) -> Tensor:
    """[N, C] RAHT coefficients of the layout's RAHT columns (row 0 = DC)."""
    return state.plan.forward(state.layout.columns(state.layout.raht, params))


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


# ------------------------------------------------------------------------ quantizers

@torch.no_grad()
def init_qas(state: CodecState, params: Mapping[str, Tensor],
             n_block: Optional[int] = None) -> BlockQuantizer:
    """(Re)build the quantizers with ``n_block`` blocks (default: the current B) and calibrate
    their ranges (vanilla) or steps (LSQ) once from ``params``' coefficients and direct columns.

    Returns:
        The RAHT quantizer (block scheme: C·B quantizers, e.g. 55 × 57 = 3,135).

    Raises:
        ValueError: ``params`` do not match the state, or fewer AC coefficients than blocks.
    """
    _check_params(state, params)
    n_block = state.quantizer.n_block if n_block is None else int(n_block)
    if not 1 <= n_block <= state.num_gaussians - 1:
        raise ValueError(f"n_block must be in [1, N - 1 = {state.num_gaussians - 1}], "
                         f"got {n_block}")
    layout, device = state.layout, state.keys.device
    scheme = QUANTIZER_SCHEMES[layout.quantizer_scheme]
    coeffs = _coefficients(state, params)
    state.quantizer = scheme(coeffs.shape[1], n_block, state.num_bits,
                             state.quantizer_kind).to(device)
    state.quantizer.calibrate(coeffs[1:])
    if layout.direct:
        direct = layout.columns(layout.direct, params)
        state.direct_quantizer = scheme(direct.shape[1], n_block, state.num_bits,
                                        state.quantizer_kind).to(device)
        state.direct_quantizer.calibrate(direct)
    state.train(state.training)
    return state.quantizer


def trainable_tensors(state: CodecState, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """What the finetune trains (``Layout.trains``): parameters by name, the state's own
    tensors (the VQ ``codebook``) by theirs."""
    own = dict(state.named_parameters())
    return {name: params[name] if name in params else own[name] for name in state.layout.trains}


def quantizer_steps(state: CodecState) -> list[Tensor]:
    """The learned steps of the LSQ quantizers (empty for vanilla ones)."""
    return [q.step for q in (state.quantizer, state.direct_quantizer)
            if q is not None and q.step is not None]


# ------------------------------------------------------------------------ the two paths

def _activated(raw: Mapping[str, Tensor], means: Tensor) -> dict[str, Tensor]:
    """Rasterizer inputs from raw parameters."""
    return {"means": means, "quats": raw["rotation"], "scales": torch.exp(raw["scaling"]),
            "opacities": torch.sigmoid(raw["opacity"]).reshape(-1),
            "shs": torch.cat([raw["f_dc"], raw["f_rest"]], dim=1)}


def simulate(state: CodecState, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """What the decoder would reconstruct, differentiably (the finetune renders this).

    layout columns → RAHT → fake quantization (training mode grows the ranges) → inverse
    RAHT; direct columns fake-quantized; VQ columns from the codebook → activated attributes.

    Returns:
        dict ``means`` [N, 3] voxel centres, ``quats`` [N, 4] unit wxyz, ``scales`` [N, 3]
        activated, ``opacities`` [N] activated, ``shs`` [N, (d+1)², 3].
    """
    _check_params(state, params)
    layout, d = state.layout, state.sh_degree
    rows = state.plan.inverse(state.quantizer.forward_coeffs(_coefficients(state, params)))
    raw = layout.params_from_columns(layout.raht, rows, d)
    if layout.direct:
        direct = state.direct_quantizer(layout.columns(layout.direct, params))
        raw.update(layout.params_from_columns(layout.direct, direct, d))
    if layout.vq:
        raw.update(layout.params_from_columns(layout.vq, state.codebook[state.vq_indices], d))
    return _activated(raw, state.means)


@torch.no_grad()
def encode(state: CodecState, params: Mapping[str, Tensor]) -> Bitstream:
    """Quantize with the current ranges (what is trained is what ships); never moves them."""
    _check_params(state, params)
    layout = state.layout
    coeffs = _coefficients(state, params)
    codes, scale, zero_point = state.quantizer.quantize(coeffs[1:])
    dtype = storage_dtype(state.num_bits)
    optional: dict[str, np.ndarray] = {}
    if layout.direct:
        d_codes, d_scale, d_zero_point = state.direct_quantizer.quantize(
            layout.columns(layout.direct, params))
        optional.update(direct_codes=np.ascontiguousarray(_numpy(d_codes).T, dtype=dtype),
                        direct_scale=_numpy(d_scale).astype(np.float64),
                        direct_zero_point=_numpy(d_zero_point).astype(np.float64))
    if layout.vq:
        optional.update(vq_indices=_numpy(state.vq_indices).astype(np.int32),
                        codebook=_numpy(state.codebook).astype(np.float32))
    return Bitstream(layout=layout.name, sh_degree=state.sh_degree, num_bits=state.num_bits,
                     quantizer=state.quantizer_kind, depth=state.depth,
                     keys=_numpy(state.keys).astype(np.int64),
                     bbox=_numpy(state.bbox).astype(np.float64),
                     dc=_numpy(coeffs[0]).astype(np.float32),
                     codes=np.ascontiguousarray(_numpy(codes).T, dtype=dtype),
                     scale=_numpy(scale).astype(np.float64),
                     zero_point=_numpy(zero_point).astype(np.float64), **optional)


def decode(bitstream: Bitstream, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Bitstream → raw parameters in ascending voxel-key order (stage 9).

    codes → x̂ per block → inverse RAHT → the layout's RAHT columns; direct columns from their
    own codes, VQ columns from the codebook; positions are the voxel centres.

    Args:
        bitstream: from :func:`read_bitstream` or :func:`encode`.
        device: where the tensors go (default CPU).

    Returns:
        dict of raw tensors named like ``GaussianModel.params`` (``xyz`` float32 voxel
        centres; the SH degree is f_rest's, :func:`layouts.sh_degree_of_params`).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    layout, d, depth = bitstream.layout_record, bitstream.sh_degree, bitstream.depth
    dequantize = QUANTIZER_SCHEMES[layout.quantizer_scheme].dequantize

    def dequantized(codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> Tensor:
        """[Q, L] codes, [Q, B] ranges → [L, Q] float32 values."""
        ranges = [torch.from_numpy(a.astype(np.float32)).to(device) for a in (scale, zero_point)]
        return dequantize(torch.from_numpy(codes.astype(np.int32)).to(device).t(), *ranges)

    voxels = keys_to_codes(torch.from_numpy(bitstream.keys).to(device), depth)
    ac = dequantized(bitstream.codes, bitstream.scale, bitstream.zero_point)
    dc = torch.from_numpy(bitstream.dc).to(device)
    rows = build_raht(voxels, depth).inverse(torch.cat([dc[None], ac], dim=0))
    raw = layout.params_from_columns(layout.raht, rows, d)
    if layout.direct:
        direct = dequantized(bitstream.direct_codes, bitstream.direct_scale,
                             bitstream.direct_zero_point)
        raw.update(layout.params_from_columns(layout.direct, direct, d))
    if layout.vq:
        indices = torch.from_numpy(bitstream.vq_indices.astype(np.int64)).to(device)
        codebook = torch.from_numpy(bitstream.codebook).to(device)
        raw.update(layout.params_from_columns(layout.vq, codebook[indices], d))
    means = decode_positions(voxels, torch.from_numpy(bitstream.bbox), depth)
    return {"xyz": means.to(torch.float32), **{k: v.contiguous() for k, v in raw.items()}}


def save(state: CodecState, params: Mapping[str, Tensor], out_dir: str | os.PathLike, *,
         measure_decode: bool = True) -> dict[str, Any]:
    """Encode and write the layout's container into ``out_dir`` (stage 8; bins: ``bins/`` and
    ``bins.zip``).

    Args:
        state, params: the prepared (finetuned) codec and parameters.
        out_dir: usually ``utils.output_paths.iteration_dir``.
        measure_decode: also time reading + decoding the file back.

    Returns:
        dict ``path`` (the bitstream file), ``size_bytes``, ``num_gaussians``,
        ``bits_per_gaussian``, ``encode_seconds``, ``decode_seconds`` (None when not measured).
    """
    start = time.perf_counter()
    path = CONTAINER_WRITERS[state.layout.container.name](encode(state, params), out_dir)
    encode_seconds = time.perf_counter() - start
    decode_seconds = None
    if measure_decode:
        start = time.perf_counter()
        decode(read_bitstream(path), device=state.keys.device)
        decode_seconds = time.perf_counter() - start
    size = path.stat().st_size
    return {"path": str(path), "size_bytes": size, "num_gaussians": state.num_gaussians,
            "bits_per_gaussian": 8.0 * size / state.num_gaussians,
            "encode_seconds": encode_seconds, "decode_seconds": decode_seconds}


# ------------------------------------------------------------------------ stages 1-6

def _new_state(layout: Layout, params: Mapping[str, Tensor], depth: int, keys: Tensor,
               bbox: Tensor, n_block: int, num_bits: int, quantizer_kind: str,
               codebook: Optional[Tensor] = None,
               vq_indices: Optional[Tensor] = None) -> CodecState:
    """A state over frozen voxels ``keys`` with quantizers calibrated on ``params``."""
    plan = build_raht(keys_to_codes(keys, depth), depth).to(keys.device)
    state = CodecState(layout, sh_degree_of_params(params), depth, num_bits, quantizer_kind,
                       keys, bbox, plan, codebook, vq_indices)
    init_qas(state, params, n_block)
    return state


def prepare(params: Mapping[str, Tensor], cameras: Optional[Sequence], cfg: CompressionParams,
            generator: Optional[torch.Generator] = None, *, backend: str = "auto"
            ) -> tuple[CodecState, dict[str, Tensor]]:
    """Stages 1-6: importance, prune, voxelize + merge, VQ, RAHT plan, ``init_qas``.

    Args:
        params: raw parameters of the trained model (on any device; everything stays there).
        cameras: training cameras for the importance (``world_to_cam``, ``K``, ``width``,
            ``height``); None or empty: importance from the opacities.
        cfg: codec settings; unset ones come from the layout (:func:`resolve_settings`).
        generator: torch.Generator on the parameters' device for "rand" merging and k-means;
            None: a generator seeded with 0.
        backend: rasterizer backend for the importance.

    Returns:
        ``(state, params')``: the :class:`CodecState` (training mode, ranges calibrated) and
        new raw parameters: pruned, merged per voxel, sorted by ascending voxel key, ``xyz``
        the voxel centres (detached tensors; ``params`` is not changed).

    Raises:
        ValueError: invalid settings, or fewer than 2 voxels / fewer AC coefficients than
            blocks after pruning and merging.
    """
    cfg = resolve_settings(cfg)
    layout = LAYOUTS[cfg.layout]
    xyz = params["xyz"]
    if generator is None:
        generator = torch.Generator(device=xyz.device).manual_seed(0)
    scores = compute_importance(xyz, params["rotation"], torch.exp(params["scaling"]),
                                torch.sigmoid(params["opacity"]), cameras, backend=backend,
                                beta=cfg.imp_beta)
    with torch.no_grad():
        keep = prune_mask(scores, cfg.percent)
        codes, bbox = voxelize(xyz[keep], cfg.depth)
        keys = codes_to_keys(codes, cfg.depth)
        unique_keys, merged = merge_voxels(
            keys, {name: params[name][keep].detach() for name in CODED_PARAMS}, cfg.oct_merge,
            importance=scores[keep], generator=generator)
        n = int(unique_keys.shape[0])
        if n < 2 or n - 1 < cfg.n_block:
            raise ValueError(f"after pruning and merging {n} Gaussians remain; the codec needs "
                             f"at least n_block + 1 = {cfg.n_block + 1}")
        logger.info("codec: %d Gaussians → %d after pruning → %d voxels (depth %d)",
                    xyz.shape[0], int(keep.sum()), n, cfg.depth)
        means = decode_positions(keys_to_codes(unique_keys, cfg.depth), bbox, cfg.depth)
        coded = {"xyz": means.to(xyz.dtype), **merged}
        vq: dict[str, Tensor] = {}
        if layout.vq:
            # A voxel's importance is the total of its members' (it weights the k-means).
            inverse = torch.unique(keys, sorted=True, return_inverse=True)[1]
            voxel_scores = scores[keep].new_zeros(n).index_add_(0, inverse, scores[keep])
            vq["codebook"], vq["vq_indices"] = vq_kmeans(
                layout.columns(layout.vq, coded), voxel_scores, cfg.codebook_size,
                cfg.vq_steps, cfg.vq_batch, generator)
        state = _new_state(layout, coded, cfg.depth, unique_keys, bbox, cfg.n_block,
                           cfg.num_bits, cfg.quantizer, **vq)
    return state, coded


def state_from_bitstream(bitstream: Bitstream, params: Mapping[str, Tensor],
                         num_bits: Optional[int] = None) -> CodecState:
    """A codec state over a bitstream's frozen geometry (voxels, RAHT plan, VQ codebook and
    indices) with fresh ``num_bits`` quantizers (default: the stream's) calibrated on
    ``params`` (its decoded parameters): re-encoding at another bit depth without retraining.
    """
    device = params["xyz"].device
    vq: dict[str, Tensor] = {}
    if bitstream.layout_record.vq:
        vq = {"codebook": torch.from_numpy(bitstream.codebook).to(device),
              "vq_indices": torch.from_numpy(bitstream.vq_indices.astype(np.int64)).to(device)}
    return _new_state(bitstream.layout_record, params, bitstream.depth,
                      torch.from_numpy(bitstream.keys).to(device),
                      torch.from_numpy(bitstream.bbox).to(device), bitstream.n_block,
                      bitstream.num_bits if num_bits is None else num_bits,
                      bitstream.quantizer, **vq)
