"""The codec core (CODEC.md §1): the stage order over plain tensors; the only module that knows it.

::

    params ──prepare──▶ (state, params')      stages 1-6: importance → prune → voxelize + merge
       │                                      (sorted by voxel key) → VQ → RAHT plan → quantizers
       │  simulate(state, params')            RAHT → fake quantization → inverse RAHT (what the
       │                                      finetune renders; differentiable)
       │  encode(state, params') → Bitstream  stage 7: codes with the trained ranges
       │  save(state, params', dir)           stage 8: encode + the layout's container
       ▼
    decode(Bitstream) → params                stage 9: codes → inverse RAHT → raw parameters

The layout's container picks the encoder and decoder (``ENCODERS``, ``DECODERS``,
``CONTAINER_WRITERS``: "bins" for seed / official, "compact" for the entropy-coded
``bitstream.gsc``), its quantizer scheme the quantizers (``QUANTIZER_SCHEMES``: "block" min–max
or LSQ per (column, block), "level" a fixed uniform step per (column, RAHT level)).

``params`` is a plain dict of raw tensors named like ``GaussianModel.params``: ``xyz`` [N, 3],
``f_dc`` [N, 1, 3], ``f_rest`` [N, (d+1)²-1, 3], ``opacity`` [N, 1] logits, ``scaling``
[N, 3] log-scales, ``rotation`` [N, 4] wxyz raw. Nothing here reads a ``GaussianModel``
(``scene/gaussian_model.py`` holds the thin adapters ``init_qas``, ``qas``, ``save_npz``,
``load_npz``); what goes where is the layout record's business (``layouts.py``).
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from compression.bitstream import Bitstream, read_bitstream, write_bitstream
from compression.compact_format import CompactBitstream, camera_up, write_compact
from compression.importance import compute_importance, prune_mask
from compression.layouts import CODED_PARAMS, GROUPS, LAYOUTS, Layout, sh_degree_of_params
from compression.octree import (codes_to_keys, decode_positions, depth_for_scales, keys_to_codes,
                                merge_voxels, voxelize)
from compression.quantization import BlockQuantizer, storage_dtype
from compression.raht import RahtPlan, build_raht
from compression.settings import CompressionParams, resolve_settings
from compression.step_quantization import (LevelQuantizer, choose_exponents, codebook_exponent,
                                           fake_quantize, grid_codes, step_values)
from compression.vq import vq_kmeans

logger = logging.getLogger(__name__)

#: the scalar quantizer of each ``Layout.quantizer_scheme``
QUANTIZER_SCHEMES: dict[str, type[nn.Module]] = {"block": BlockQuantizer, "level": LevelQuantizer}
#: the writer of each ``Container.name`` (``read_bitstream`` tells containers apart by content)
CONTAINER_WRITERS = {"bins": write_bitstream, "compact": write_compact}
#: auto codebook size (compact): ``codebook_reference`` entries for a model of this many coded
#: Gaussians, scaled by sqrt(N / reference), rounded to a power of two, within this range
CODEBOOK_REFERENCE_GAUSSIANS = 32768
AUTO_CODEBOOK_RANGE = (16, 4096)


class CodecState(nn.Module):
    """Everything the codec keeps for one prepared model (frozen geometry, RAHT, quantizers).

    Attributes:
        layout: the :class:`layouts.Layout`.
        sh_degree: d.
        depth: D.
        num_bits, quantizer_kind: b and "vanilla" | "lsq" of every block quantizer (None for
            the "level" scheme).
        plan: the :class:`RahtPlan` of the frozen voxels.
        quantizer: the quantizer of the C RAHT columns (block scheme: C·B quantizers; level
            scheme: a :class:`LevelQuantizer`); None until initialized.
        direct_quantizer: the quantizer of the C' directly quantized columns (official: the 3
            log-scales), or None.
        codebook: layouts with VQ, [K, F] trainable codebook (nn.Parameter), else None.
        codebook_exponent: "grid" codebook storage: the exponent e of the codebook's grid step
            2^(e/4) (fixed at prepare), else None.
        num_input: Gaussians of the model before pruning and merging (bits per input Gaussian).
        quality: the ``--quality`` level (0 for layouts without the knob).
        up: [3] float32 unit up vector of the scene from the training cameras
            (``compact_format.camera_up``), or None; the compact container stores it.
    Buffers: ``keys`` [N] int64 ascending voxel keys, ``bbox`` [6] float64, ``means`` [N, 3]
    voxel centres (float32), ``vq_indices`` [N] int64 (layouts with VQ).

    ``train()``/``eval()`` switch the quantizers: training forwards grow the vanilla ranges,
    evaluation and saving never move them (level quantizers never move).
    """

    def __init__(self, layout: Layout, sh_degree: int, depth: int, num_bits: Optional[int],
                 quantizer_kind: Optional[str], keys: Tensor, bbox: Tensor, plan: RahtPlan,
                 codebook: Optional[Tensor] = None, vq_indices: Optional[Tensor] = None, *,
                 num_input: Optional[int] = None, quality: int = 0,
                 codebook_exponent: Optional[int] = None) -> None:
        super().__init__()
        self.layout, self.sh_degree, self.depth = layout, sh_degree, depth
        self.num_bits, self.quantizer_kind = num_bits, quantizer_kind
        self.plan = plan
        self.num_input = int(keys.shape[0] if num_input is None else num_input)
        self.quality = int(quality)
        self.quantizer: Optional[nn.Module] = None
        self.direct_quantizer: Optional[BlockQuantizer] = None
        self.codebook = None if codebook is None else nn.Parameter(codebook.detach().clone())
        self.codebook_exponent = codebook_exponent
        self.up: Optional[np.ndarray] = None
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
        ValueError: ``params`` do not match the state, fewer AC coefficients than blocks, or a
            layout without block quantizers.
    """
    _check_params(state, params)
    if "n_block" in state.layout.ignores:
        raise ValueError(f"layout {state.layout.name} has no block quantizers (its steps come "
                         f"from --quality / --base_step)")
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


@torch.no_grad()
def _init_level_quantizer(state: CodecState, params: Mapping[str, Tensor],
                          base_step: float) -> LevelQuantizer:
    """Fix the steps of the "level" scheme: ``base_step`` × each column's group weight, per
    (column, RAHT level) (:func:`step_quantization.choose_exponents`)."""
    layout, device = state.layout, state.keys.device
    weights = [layout.step_weights[name] for name in layout.raht
               for _ in range(GROUPS[name].width(state.sh_degree))]
    coeffs = _coefficients(state, params)
    slot_levels = state.plan.slot_levels()
    exponents = choose_exponents(coeffs, slot_levels, len(state.plan.levels),
                                 base_step * torch.tensor(weights, dtype=torch.float64))
    state.quantizer = LevelQuantizer(exponents, slot_levels).to(device)
    return state.quantizer


def trainable_tensors(state: CodecState, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """What the finetune trains (``Layout.trains``): parameters by name, the state's own
    tensors (the VQ ``codebook``) by theirs; a codebook the model has none of (SH degree 0)
    is skipped."""
    own = dict(state.named_parameters())
    return {name: params[name] if name in params else own[name] for name in state.layout.trains
            if name in params or name in own}


def quantizer_steps(state: CodecState) -> list[Tensor]:
    """The learned steps of the LSQ quantizers (empty for vanilla and level ones)."""
    return [q.step for q in (state.quantizer, state.direct_quantizer)
            if getattr(q, "step", None) is not None]


# ------------------------------------------------------------------------ the two paths

def _codebook_step(state: CodecState) -> Tensor:
    """The float32 step of a "grid" codebook, on the codebook's device."""
    return step_values([state.codebook_exponent]).to(state.codebook.device)


def _stored_codebook(state: CodecState) -> Tensor:
    """The codebook as the decoder reads it (``Layout.codebook_storage``: float32 as is, or
    rounded to its grid with a straight-through gradient)."""
    if state.layout.codebook_storage == "grid":
        return fake_quantize(state.codebook, _codebook_step(state).to(state.codebook.dtype))
    return state.codebook


def _vq_columns(state: CodecState, params: Mapping[str, Tensor]) -> Tensor:
    """[N, F] VQ columns as decoded: codebook rows, or [N, 0] when F = 0 (SH degree 0)."""
    if state.codebook is None:
        return params["f_rest"].new_zeros((state.num_gaussians, 0))
    return _stored_codebook(state)[state.vq_indices]


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
    rows = state.plan.inverse(state.quantizer.forward_coeffs(_coefficients(state, params)),
                              exact=layout.exact_decode)
    raw = layout.params_from_columns(layout.raht, rows, d)
    if layout.direct:
        direct = state.direct_quantizer(layout.columns(layout.direct, params))
        raw.update(layout.params_from_columns(layout.direct, direct, d))
    if layout.vq:
        raw.update(layout.params_from_columns(layout.vq, _vq_columns(state, params), d))
    if layout.exact_decode:
        # What a decoded model renders: contiguous parameters (elementwise kernels such as
        # sigmoid may round a strided view differently in the last bit) and unit quaternions
        # (GaussianModel.get_rotation normalizes), so the two renders agree bit for bit.
        raw = {name: value.contiguous() for name, value in raw.items()}
        raw["rotation"] = nn.functional.normalize(raw["rotation"], dim=-1)
    return _activated(raw, state.means)


@torch.no_grad()
def encode(state: CodecState, params: Mapping[str, Tensor]) -> Bitstream | CompactBitstream:
    """Quantize with the current ranges or steps (what is trained is what ships); never moves
    them. The layout's container picks the encoder (``ENCODERS``)."""
    _check_params(state, params)
    return ENCODERS[state.layout.container.name](state, params)


def _encode_bins(state: CodecState, params: Mapping[str, Tensor]) -> Bitstream:
    """The bins container's content (block quantizers, float32 codebook)."""
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


def _encode_compact(state: CodecState, params: Mapping[str, Tensor]) -> CompactBitstream:
    """The compact container's content: AC codes of the level quantizer, codebook grid codes."""
    coeffs = _coefficients(state, params)
    if state.codebook is None:
        vq_indices, codebook, exponent = np.zeros(0, np.int64), np.zeros((0, 0), np.int64), 0
    else:
        vq_indices = _numpy(state.vq_indices).astype(np.int64)
        codebook = _numpy(grid_codes(state.codebook, _codebook_step(state), "codebook entries"))
        exponent = state.codebook_exponent
    return CompactBitstream(
        sh_degree=state.sh_degree, depth=state.depth, quality=state.quality,
        bbox=_numpy(state.bbox).astype(np.float64),
        voxels=_numpy(keys_to_codes(state.keys, state.depth)),
        dc=_numpy(coeffs[0]).astype(np.float32),
        exponents=_numpy(state.quantizer.exponents), codes=_numpy(state.quantizer.quantize(coeffs)),
        vq_indices=vq_indices, codebook_codes=codebook, codebook_exponent=exponent,
        plan=state.plan, up=state.up)


#: the encoder of each ``Container.name``
ENCODERS = {"bins": _encode_bins, "compact": _encode_compact}


def decode(bitstream: Bitstream | CompactBitstream,
           device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Bitstream → raw parameters in ascending voxel-key order (stage 9).

    codes → x̂ (per block, or per (column, level) step) → inverse RAHT → the layout's RAHT
    columns; direct columns from their own codes, VQ columns from the codebook; positions are
    the voxel centres.

    Args:
        bitstream: from :func:`read_bitstream` or :func:`encode`.
        device: where the tensors go (default CPU).

    Returns:
        dict of raw tensors named like ``GaussianModel.params`` (``xyz`` float32 voxel
        centres; the SH degree is f_rest's, :func:`layouts.sh_degree_of_params`).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    return DECODERS[bitstream.layout_record.container.name](bitstream, device)


def _decode_bins(bitstream: Bitstream, device: torch.device) -> dict[str, Tensor]:
    """The bins container's decoder (block quantizers)."""
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


def _decode_compact(bitstream: CompactBitstream, device: torch.device) -> dict[str, Tensor]:
    """The compact container's decoder: x̂ = q · step per (column, level), the same float32
    ops as :func:`simulate`, so the result equals the finetune's evaluation-mode render input."""
    layout, d = bitstream.layout_record, bitstream.sh_degree
    scheme = QUANTIZER_SCHEMES[layout.quantizer_scheme]
    slot_steps = scheme.steps_of(bitstream.exponents, bitstream.plan.slot_levels())
    ac = scheme.dequantize(torch.from_numpy(bitstream.codes).to(device), slot_steps.to(device))
    dc = torch.from_numpy(bitstream.dc).to(device)
    rows = bitstream.plan.inverse(torch.cat([dc[None], ac]), exact=layout.exact_decode)
    raw = layout.params_from_columns(layout.raht, rows, d)
    n = bitstream.num_gaussians
    rest = (torch.from_numpy(bitstream.codebook).to(device)[
        torch.from_numpy(bitstream.vq_indices).to(device)] if bitstream.codebook_size
        else torch.zeros((n, 0), device=device))
    raw.update(layout.params_from_columns(layout.vq, rest, d))
    voxels = torch.from_numpy(bitstream.voxels).to(device)
    means = decode_positions(voxels, torch.from_numpy(bitstream.bbox), bitstream.depth)
    return {"xyz": means.to(torch.float32), **{k: v.contiguous() for k, v in raw.items()}}


#: the decoder of each ``Container.name``
DECODERS = {"bins": _decode_bins, "compact": _decode_compact}


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
        ``bits_per_gaussian`` (per coded Gaussian), ``bits_per_input_gaussian`` (per Gaussian
        before pruning and merging), ``encode_seconds``, ``decode_seconds`` (None when not
        measured), ``depth`` and ``codebook_size`` (what ran; 0 without VQ).
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
            "bits_per_input_gaussian": 8.0 * size / state.num_input,
            "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
            "depth": state.depth,
            "codebook_size": 0 if state.codebook is None else int(state.codebook.shape[0])}


# ------------------------------------------------------------------------ stages 1-6

#: how each quantizer scheme is set up on a new state from the settings
_QUANTIZER_SETUP = {
    "block": lambda state, params, cfg: init_qas(state, params, cfg.n_block),
    "level": lambda state, params, cfg: _init_level_quantizer(state, params, cfg.base_step),
}


def _new_state(layout: Layout, params: Mapping[str, Tensor], depth: int, keys: Tensor,
               bbox: Tensor, cfg: CompressionParams, codebook: Optional[Tensor] = None,
               vq_indices: Optional[Tensor] = None, num_input: Optional[int] = None,
               codebook_exponent: Optional[int] = None) -> CodecState:
    """A state over frozen voxels ``keys`` with quantizers set up on ``params`` (block scheme:
    ``cfg.n_block``, ``num_bits``, ``quantizer`` calibrated; level scheme: steps from
    ``cfg.base_step``)."""
    plan = build_raht(keys_to_codes(keys, depth), depth).to(keys.device)
    state = CodecState(layout, sh_degree_of_params(params), depth, cfg.num_bits, cfg.quantizer,
                       keys, bbox, plan, codebook, vq_indices, num_input=num_input,
                       quality=cfg.quality or 0, codebook_exponent=codebook_exponent)
    _QUANTIZER_SETUP[layout.quantizer_scheme](state, params, cfg)
    return state


def auto_codebook_size(layout: Layout, quality: int, num_gaussians: int) -> int:
    """The codebook size a layout's quality level gives a model of ``num_gaussians`` coded
    Gaussians: its ``codebook_reference`` × sqrt(N / 32768), rounded to a power of two, within
    :data:`AUTO_CODEBOOK_RANGE` (vq_kmeans further caps it at N // 4)."""
    reference = layout.quality_levels[quality]["codebook_reference"]
    scaled = reference * math.sqrt(num_gaussians / CODEBOOK_REFERENCE_GAUSSIANS)
    low, high = AUTO_CODEBOOK_RANGE
    return int(min(max(2 ** round(math.log2(scaled)), low), high))


def prepare(params: Mapping[str, Tensor], cameras: Optional[Sequence], cfg: CompressionParams,
            generator: Optional[torch.Generator] = None, *, backend: str = "auto"
            ) -> tuple[CodecState, dict[str, Tensor]]:
    """Stages 1-6: importance, prune, voxelize + merge, VQ, RAHT plan, quantizers.

    Args:
        params: raw parameters of the trained model (on any device; everything stays there).
        cameras: training cameras for the importance (``world_to_cam``, ``K``, ``width``,
            ``height``); None or empty: importance from the opacities.
        cfg: codec settings; unset ones come from the layout (:func:`resolve_settings`). An
            unset depth is chosen from the kept Gaussians' sizes (``octree.depth_for_scales``
            with ``voxel_ratio``), an unset codebook size from the quality level and the
            model's size (:func:`auto_codebook_size`).
        generator: torch.Generator on the parameters' device for "rand" merging and k-means;
            None: a generator seeded with 0.
        backend: rasterizer backend for the importance.

    Returns:
        ``(state, params')``: the :class:`CodecState` (training mode, quantizers set up) and
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
        if not bool(keep.any()):
            raise ValueError("importance pruning keeps no Gaussian (no view sees any, or "
                             "percent = 1)")
        depth = cfg.depth if cfg.depth is not None else depth_for_scales(
            xyz[keep], params["scaling"][keep], cfg.voxel_ratio)
        codes, bbox = voxelize(xyz[keep], depth)
        keys = codes_to_keys(codes, depth)
        unique_keys, merged = merge_voxels(
            keys, {name: params[name][keep].detach() for name in CODED_PARAMS}, cfg.oct_merge,
            importance=scores[keep], generator=generator)
        n = int(unique_keys.shape[0])
        needed, rule = (2, "2") if cfg.n_block is None else (cfg.n_block + 1, "n_block + 1")
        if n < needed:
            raise ValueError(f"after pruning and merging {n} Gaussians remain; the codec needs "
                             f"at least {rule} = {needed}")
        logger.info("codec: %d Gaussians → %d after pruning → %d voxels (depth %d)",
                    xyz.shape[0], int(keep.sum()), n, depth)
        means = decode_positions(keys_to_codes(unique_keys, depth), bbox, depth)
        coded = {"xyz": means.to(xyz.dtype), **merged}
        vq: dict[str, Tensor] = {}
        if layout.vq and layout.width(layout.vq, sh_degree_of_params(coded)):
            # A voxel's importance is the total of its members' (it weights the k-means).
            inverse = torch.unique(keys, sorted=True, return_inverse=True)[1]
            voxel_scores = scores[keep].new_zeros(n).index_add_(0, inverse, scores[keep])
            size = cfg.codebook_size if cfg.codebook_size is not None else \
                auto_codebook_size(layout, cfg.quality, n)
            columns = layout.columns(layout.vq, coded)
            vq["codebook"], vq["vq_indices"] = vq_kmeans(columns, voxel_scores, size,
                                                         cfg.vq_steps, cfg.vq_batch, generator)
            if layout.codebook_storage == "grid":
                vq_mse = float(((columns - vq["codebook"][vq["vq_indices"]]) ** 2).mean())
                vq["codebook_exponent"] = codebook_exponent(vq["codebook"], vq_mse)
        state = _new_state(layout, coded, depth, unique_keys, bbox, cfg,
                           num_input=int(xyz.shape[0]), **vq)
        state.up = camera_up(cameras)
    return state, coded


def state_from_bitstream(bitstream: Bitstream, params: Mapping[str, Tensor],
                         num_bits: Optional[int] = None) -> CodecState:
    """A codec state over a bitstream's frozen geometry (voxels, RAHT plan, VQ codebook and
    indices) with fresh ``num_bits`` quantizers (default: the stream's) calibrated on
    ``params`` (its decoded parameters): re-encoding at another bit depth without retraining.

    Raises:
        ValueError: a layout without block quantizers (compact: sweep ``--quality`` instead).
    """
    layout = bitstream.layout_record
    if "num_bits" in layout.ignores:
        raise ValueError(f"layout {layout.name} has no bit depth to re-encode at (sweep its "
                         f"--quality instead)")
    device = params["xyz"].device
    vq: dict[str, Tensor] = {}
    if layout.vq:
        vq = {"codebook": torch.from_numpy(bitstream.codebook).to(device),
              "vq_indices": torch.from_numpy(bitstream.vq_indices.astype(np.int64)).to(device)}
    settings = CompressionParams(layout=layout.name, n_block=bitstream.n_block,
                                 num_bits=bitstream.num_bits if num_bits is None else num_bits,
                                 quantizer=bitstream.quantizer)
    return _new_state(layout, params, bitstream.depth,
                      torch.from_numpy(bitstream.keys).to(device),
                      torch.from_numpy(bitstream.bbox).to(device), settings, **vq)
