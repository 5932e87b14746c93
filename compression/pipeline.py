"""The codec's stage order (CODEC.md §1); the only module that knows it.

Typical use (``train.py`` after training, or on a given PLY)::

    state = prepare(gaussians, cameras, cfg, generator)   # stages 1-6; edits ``gaussians``
    ...finetune: render with gaussian_renderer.ft_render (calls state.simulate(gaussians))...
    info = state.save(gaussians, iteration_dir(model_path, cfg.layout, k))  # stage 8
    write_report(...); append_results_csv(...)
    model = decode(read_bitstream(path))                  # stage 9

Stages: importance → prune → voxelize + merge (Gaussians sorted by ascending voxel key from
then on) → attribute matrix → RAHT → block quantization (ranges calibrated once from the
initial coefficients, ``init_qas``). Attribute matrix columns:

* seed layout (C = 10 + 3·((d+1)²-1), 55 for d = 3): opacity logit, Euler roll/pitch/yaw of
  the normalized quaternion, f_dc RGB, f_rest in the in-memory (N, (d+1)²-1, 3) order
  flattened, log-scale xyz; every column goes through RAHT + block quantization.
* official layout (C = 7): opacity logit, Euler angles, f_dc through RAHT; the 3 log-scales
  block-quantized directly (split_length(N, B) in key order); f_rest vector-quantized.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from arguments import CompressionParams
from compression.bitstream import (Bitstream, num_raht_columns, read_bitstream,
                                   write_bitstream)
from compression.euler import euler_to_quat, quat_to_euler
from compression.importance import compute_importance, prune_mask
from compression.octree import (codes_to_keys, decode_positions, keys_to_codes, merge_voxels,
                                voxelize)
from compression.quantization import BlockQuantizer, block_ids, dequantize, storage_dtype
from compression.raht import RahtPlan, build_raht
from compression.vq import vq_kmeans
from scene.gaussian_model import GaussianModel
from scene.ply import field_names
from utils.system_utils import atomic_path

logger = logging.getLogger(__name__)

LAYOUTS = ("seed", "official")
RESULTS_HEADER = ("Submethod", "PSNR", "SSIM", "LPIPS", "Size [Bytes]", "#Gaussians")
_MERGED_PARAMS = ("f_dc", "f_rest", "opacity", "scaling", "rotation")


def iteration_dir(model_path: str | os.PathLike, layout: str, iteration: int) -> Path:
    """``<model>/compression/<layout>/iteration_<k>`` (where bins/, bins.zip, report.json go)."""
    return Path(model_path) / "compression" / layout / f"iteration_{iteration}"


# ------------------------------------------------------------------------ attribute matrix

def _raht_attributes(params: Mapping[str, Tensor], layout: str) -> Tensor:
    """The RAHT input rows [N, C] from raw parameters (column order in the module docstring)."""
    n = params["opacity"].shape[0]
    columns = [params["opacity"].reshape(n, 1), quat_to_euler(params["rotation"]),
               params["f_dc"].reshape(n, 3)]
    if layout == "seed":
        columns += [params["f_rest"].reshape(n, -1), params["scaling"]]
    return torch.cat(columns, dim=1)


def _raw_from_columns(rows: Tensor, rest_shape: tuple[int, int], log_scales: Optional[Tensor],
                      f_rest: Optional[Tensor]) -> dict[str, Tensor]:
    """Raw parameters from reconstructed RAHT rows [N, C] (inverse of ``_raht_attributes``).

    ``log_scales`` [N, 3] and ``f_rest`` (official layout) replace the columns the seed layout
    carries in ``rows``.
    """
    n = rows.shape[0]
    n_rest = rest_shape[0] * rest_shape[1]
    if f_rest is None:
        f_rest = rows[:, 7:7 + n_rest]
        log_scales = rows[:, 7 + n_rest:10 + n_rest]
    return {"opacity": rows[:, :1], "rotation": euler_to_quat(rows[:, 1:4]),
            "f_dc": rows[:, 4:7].reshape(n, 1, 3), "f_rest": f_rest.reshape(n, *rest_shape),
            "scaling": log_scales}


def _activated(raw: Mapping[str, Tensor], means: Tensor) -> dict[str, Tensor]:
    """Rasterizer inputs from raw parameters."""
    return {"means": means, "quats": raw["rotation"], "scales": torch.exp(raw["scaling"]),
            "opacities": torch.sigmoid(raw["opacity"]).reshape(-1),
            "shs": torch.cat([raw["f_dc"], raw["f_rest"]], dim=1)}


# ------------------------------------------------------------------------ codec state

class CodecState(nn.Module):
    """Everything the codec keeps for one prepared model (frozen geometry, RAHT, quantizers).

    Attributes:
        layout: "seed" or "official".
        sh_degree: d.
        depth: D.
        plan: the :class:`RahtPlan` of the frozen voxels.
        quantizer: :class:`BlockQuantizer` over the C RAHT columns (C·B quantizers).
        scale_quantizer: official only, :class:`BlockQuantizer` over the 3 log-scales (3·B).
        codebook: official only, [K, 3·((d+1)²-1)] trainable f_rest codebook (nn.Parameter).
    Buffers: ``keys`` [N] int64 ascending voxel keys, ``bbox`` [6] float64,
    ``means`` [N, 3] voxel centres (float32), ``vq_indices`` [N] int64 (official).

    ``train()``/``eval()`` switch the quantizers: training forwards grow the vanilla ranges,
    evaluation and saving never move them.
    """

    def __init__(self, layout: str, sh_degree: int, depth: int, keys: Tensor, bbox: Tensor,
                 plan: RahtPlan, quantizer: BlockQuantizer,
                 scale_quantizer: Optional[BlockQuantizer] = None,
                 codebook: Optional[Tensor] = None, vq_indices: Optional[Tensor] = None) -> None:
        super().__init__()
        self.layout, self.sh_degree, self.depth = layout, sh_degree, depth
        self.plan = plan
        self.quantizer = quantizer
        self.scale_quantizer = scale_quantizer
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

    def _rest_shape(self) -> tuple[int, int]:
        return (self.sh_degree + 1) ** 2 - 1, 3

    def _check_model(self, gaussians: GaussianModel) -> None:
        if gaussians.num_gaussians != self.num_gaussians:
            raise ValueError(f"the model has {gaussians.num_gaussians} Gaussians, the codec was "
                             f"prepared for {self.num_gaussians} (run prepare() on this model)")

    @torch.no_grad()
    def init_qas(self, gaussians: GaussianModel, n_block: Optional[int] = None) -> BlockQuantizer:
        """(Re)build the block quantizers with ``n_block`` blocks (default: the current B) and
        calibrate their ranges (vanilla) or steps (LSQ) once from the model's current
        coefficients (official layout: also the log-scale quantizer).

        Returns:
            The RAHT :class:`BlockQuantizer` (C·B quantizers, e.g. 55 × 57 = 3,135).

        Raises:
            ValueError: the model does not match this state, or fewer AC coefficients than
                ``n_block``.
        """
        self._check_model(gaussians)
        n_block = self.quantizer.n_block if n_block is None else int(n_block)
        if not 1 <= n_block <= self.num_gaussians - 1:
            raise ValueError(f"n_block must be in [1, N - 1 = {self.num_gaussians - 1}], "
                             f"got {n_block}")
        bits, kind, device = self.quantizer.bits, self.quantizer.kind, self.keys.device
        coeffs = self.plan.forward(_raht_attributes(gaussians.params, self.layout))
        self.quantizer = BlockQuantizer(coeffs.shape[1], n_block, bits, kind).to(device)
        self.quantizer.calibrate(coeffs[1:])
        if self.scale_quantizer is not None:
            self.scale_quantizer = BlockQuantizer(3, n_block, bits, kind).to(device)
            self.scale_quantizer.calibrate(gaussians.params["scaling"])
        self.train(self.training)
        return self.quantizer

    def simulate(self, gaussians: GaussianModel) -> dict[str, Tensor]:
        """What the decoder would reconstruct, differentiably (``ft_render`` calls this).

        attributes → RAHT → fake quantization (training mode updates the ranges) → inverse
        RAHT → activated attributes.

        Returns:
            dict ``means`` [N, 3] voxel centres, ``quats`` [N, 4] unit wxyz, ``scales`` [N, 3]
            activated, ``opacities`` [N] activated, ``shs`` [N, (d+1)², 3].
        """
        self._check_model(gaussians)
        params = gaussians.params
        coeffs = self.plan.forward(_raht_attributes(params, self.layout))
        ac_hat = self.quantizer(coeffs[1:])
        rows = self.plan.inverse(torch.cat([coeffs[:1], ac_hat], dim=0))
        log_scales = f_rest = None
        if self.layout == "official":
            log_scales = self.scale_quantizer(params["scaling"])
            f_rest = self.codebook[self.vq_indices]
        return _activated(_raw_from_columns(rows, self._rest_shape(), log_scales, f_rest),
                          self.means)

    @torch.no_grad()
    def encode(self, gaussians: GaussianModel) -> Bitstream:
        """Quantize with the current ranges (what is trained is what ships); never moves them."""
        self._check_model(gaussians)
        params = gaussians.params
        coeffs = self.plan.forward(_raht_attributes(params, self.layout))
        codes, scale, zero_point = self.quantizer.quantize(coeffs[1:])
        dtype = storage_dtype(self.quantizer.bits)
        official: dict[str, np.ndarray] = {}
        if self.layout == "official":
            s_codes, s_scale, s_zero_point = self.scale_quantizer.quantize(params["scaling"])
            official = {"scale_codes": np.ascontiguousarray(_numpy(s_codes).T, dtype=dtype),
                        "scale_scale": _numpy(s_scale).astype(np.float64),
                        "scale_zero_point": _numpy(s_zero_point).astype(np.float64),
                        "vq_indices": _numpy(self.vq_indices).astype(np.int32),
                        "codebook": _numpy(self.codebook).astype(np.float32)}
        return Bitstream(layout=self.layout, sh_degree=self.sh_degree,
                         num_bits=self.quantizer.bits, quantizer=self.quantizer.kind,
                         depth=self.depth, keys=_numpy(self.keys).astype(np.int64),
                         bbox=_numpy(self.bbox).astype(np.float64),
                         dc=_numpy(coeffs[0]).astype(np.float32),
                         codes=np.ascontiguousarray(_numpy(codes).T, dtype=dtype),
                         scale=_numpy(scale).astype(np.float64),
                         zero_point=_numpy(zero_point).astype(np.float64), **official)

    def decode(self, bitstream: Bitstream) -> GaussianModel:
        """:func:`decode` onto this state's device."""
        return decode(bitstream, device=self.keys.device)

    def save(self, gaussians: GaussianModel, out_dir: str | os.PathLike, *,
             measure_decode: bool = True) -> dict[str, Any]:
        """Encode and write ``<out_dir>/bins/`` + ``<out_dir>/bins.zip`` (stage 8).

        Args:
            gaussians: the prepared (finetuned) model.
            out_dir: usually :func:`iteration_dir`.
            measure_decode: also time reading + decoding ``bins.zip`` back.

        Returns:
            dict ``path`` (bins.zip), ``size_bytes``, ``num_gaussians``, ``bits_per_gaussian``,
            ``encode_seconds``, ``decode_seconds`` (None when not measured).
        """
        start = time.perf_counter()
        path = write_bitstream(self.encode(gaussians), out_dir)
        encode_seconds = time.perf_counter() - start
        decode_seconds = None
        if measure_decode:
            start = time.perf_counter()
            self.decode(read_bitstream(path))
            decode_seconds = time.perf_counter() - start
        size = path.stat().st_size
        return {"path": str(path), "size_bytes": size, "num_gaussians": self.num_gaussians,
                "bits_per_gaussian": 8.0 * size / self.num_gaussians,
                "encode_seconds": encode_seconds, "decode_seconds": decode_seconds}


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


# ------------------------------------------------------------------------ stages 1-6

def _check_config(cfg: CompressionParams) -> None:
    problems = [
        (cfg.layout in LAYOUTS, f"layout must be one of {LAYOUTS}, got {cfg.layout!r}"),
        (0.0 <= cfg.percent <= 1.0, f"percent must be in [0, 1], got {cfg.percent}"),
        (1 <= cfg.depth <= 21, f"depth must be in [1, 21], got {cfg.depth}"),
        (cfg.n_block >= 1, f"n_block must be >= 1, got {cfg.n_block}"),
        (cfg.codebook_size >= 1 or cfg.layout == "seed",
         f"codebook_size must be >= 1, got {cfg.codebook_size}"),
    ]
    for ok, what in problems:
        if not ok:
            raise ValueError(f"CompressionParams: {what}")


def prepare(gaussians: GaussianModel, cameras: Optional[Sequence], cfg: CompressionParams,
            generator: Optional[torch.Generator] = None, *, backend: str = "auto") -> CodecState:
    """Stages 1-6: importance, prune, voxelize + merge, attribute matrix, RAHT, ``init_qas``.

    Edits ``gaussians`` in place: pruned, merged per voxel, sorted by ascending voxel key,
    positions replaced by the voxel centres and frozen (``xyz.requires_grad`` False), SH degree
    at its maximum; attaches the returned state as ``gaussians.codec`` (``ft_render`` uses it).

    Args:
        gaussians: the trained model (on any device; everything stays there).
        cameras: training cameras for the importance (``world_to_cam``, ``K``, ``width``,
            ``height``); None or empty: importance from the opacities.
        cfg: codec settings (layout, percent, depth, n_block, num_bits, quantizer,
            codebook_size, vq_steps, vq_batch, oct_merge, imp_beta).
        generator: torch.Generator on the model's device for "rand" merging and k-means;
            None: a generator seeded with 0.
        backend: rasterizer backend for the importance.

    Returns:
        The :class:`CodecState` (in training mode, ranges calibrated).

    Raises:
        ValueError: invalid settings, or fewer than 2 voxels / fewer AC coefficients than
            blocks after pruning and merging.
    """
    _check_config(cfg)
    device = gaussians.device
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    n_input = gaussians.num_gaussians
    params = gaussians.params
    scores = compute_importance(params["xyz"], params["rotation"], gaussians.get_scaling,
                                gaussians.get_opacity, cameras, backend=backend,
                                beta=cfg.imp_beta)
    with torch.no_grad():
        keep = prune_mask(scores, cfg.percent)
        codes, bbox = voxelize(params["xyz"][keep], cfg.depth)
        keys = codes_to_keys(codes, cfg.depth)
        unique_keys, merged = merge_voxels(
            keys, {name: params[name][keep] for name in _MERGED_PARAMS}, cfg.oct_merge,
            importance=scores[keep], generator=generator)
        n = int(unique_keys.shape[0])
        if n < 2 or n - 1 < cfg.n_block:
            raise ValueError(f"after pruning and merging {n} Gaussians remain; the codec needs "
                             f"at least n_block + 1 = {cfg.n_block + 1}")
        # A voxel's importance is the total of its members' (used to weight the k-means).
        inverse = torch.unique(keys, sorted=True, return_inverse=True)[1]
        voxel_scores = scores[keep].new_zeros(n).index_add_(0, inverse, scores[keep])
        voxels = keys_to_codes(unique_keys, cfg.depth)
        gaussians.set_params({"xyz": nn.Parameter(
            decode_positions(voxels, bbox, cfg.depth).to(params["xyz"].dtype),
            requires_grad=False), **merged})
        gaussians.active_sh_degree = gaussians.max_sh_degree
        logger.info("codec: %d Gaussians → %d after pruning → %d voxels (depth %d)",
                    n_input, int(keep.sum()), n, cfg.depth)

        plan = build_raht(voxels, cfg.depth).to(device)
        quantizer = BlockQuantizer(num_raht_columns(cfg.layout, gaussians.max_sh_degree),
                                   cfg.n_block, cfg.num_bits, cfg.quantizer).to(device)
        extras: dict[str, Any] = {}
        if cfg.layout == "official":
            scale_quantizer = BlockQuantizer(3, cfg.n_block, cfg.num_bits, cfg.quantizer).to(device)
            codebook, indices = vq_kmeans(gaussians.params["f_rest"].reshape(n, -1), voxel_scores,
                                          cfg.codebook_size, cfg.vq_steps, cfg.vq_batch, generator)
            extras = {"scale_quantizer": scale_quantizer, "codebook": codebook,
                      "vq_indices": indices}
        state = CodecState(cfg.layout, gaussians.max_sh_degree, cfg.depth, unique_keys, bbox,
                           plan, quantizer, **extras)
        state.init_qas(gaussians)
    gaussians.codec = state
    return state


# ------------------------------------------------------------------------ stage 9

def decode(bitstream: Bitstream, device: torch.device | str | None = None) -> GaussianModel:
    """Bitstream → Gaussians in ascending voxel-key order (stage 9).

    codes → x̂ per block → inverse RAHT → raw attributes; positions are the voxel centres,
    rotations the quaternions of the decoded Euler angles; official layout: log-scales from
    their own codes, f_rest from the codebook.

    Args:
        bitstream: from :func:`read_bitstream` or :meth:`CodecState.encode`.
        device: where the model lives (default CPU).

    Returns:
        A :class:`GaussianModel` with ``active_sh_degree`` = ``max_sh_degree``.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    depth, b = bitstream.depth, bitstream.n_block
    keys = torch.from_numpy(bitstream.keys).to(device)
    voxels = keys_to_codes(keys, depth)
    plan = build_raht(voxels, depth)

    def dequantized(codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> Tensor:
        """[Q, L] codes, [Q, B] ranges → [L, Q] float32 values."""
        ids = block_ids(codes.shape[1], b, device)
        rows = [torch.from_numpy(a.astype(np.float32)).to(device).t() for a in (scale, zero_point)]
        return dequantize(torch.from_numpy(codes.astype(np.int32)).to(device).t(),
                          rows[0][ids], rows[1][ids])

    ac = dequantized(bitstream.codes, bitstream.scale, bitstream.zero_point)
    dc = torch.from_numpy(bitstream.dc).to(device)
    rows = plan.inverse(torch.cat([dc[None], ac], dim=0))
    log_scales = f_rest = None
    if bitstream.layout == "official":
        log_scales = dequantized(bitstream.scale_codes, bitstream.scale_scale,
                                 bitstream.scale_zero_point)
        indices = torch.from_numpy(bitstream.vq_indices.astype(np.int64)).to(device)
        f_rest = torch.from_numpy(bitstream.codebook).to(device)[indices]
    rest_shape = ((bitstream.sh_degree + 1) ** 2 - 1, 3)
    raw = _raw_from_columns(rows, rest_shape, log_scales, f_rest)
    model = GaussianModel(bitstream.sh_degree)
    means = decode_positions(voxels, torch.from_numpy(bitstream.bbox), depth)
    model.set_params({"xyz": means.to(torch.float32), **{k: v.contiguous() for k, v in raw.items()}})
    model.active_sh_degree = model.max_sh_degree
    return model


def export_ply(bitstream_path: str | os.PathLike, ply_path: str | os.PathLike) -> Path:
    """Decode a bins folder or bins.zip and write it as a standard 3DGS PLY (atomic).

    Raises:
        FileNotFoundError, BitstreamError: see :func:`read_bitstream` (nothing is written).
    """
    decode(read_bitstream(bitstream_path)).save_ply(ply_path)
    return Path(ply_path)


# ------------------------------------------------------------------------ reporting

def standard_ply_size_bytes(num_gaussians: int, sh_degree: int) -> int:
    """Byte size of the standard binary 3DGS PLY of ``num_gaussians`` at ``sh_degree``
    (the uncompressed reference for ratios; equals what ``GaussianModel.save_ply`` writes)."""
    names = [name for cols in field_names(sh_degree).values() for name in cols]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {num_gaussians}",
              *[f"property float {name}" for name in names], "end_header"]
    return len("\n".join(header).encode()) + 1 + 4 * len(names) * num_gaussians


def write_report(out_dir: str | os.PathLike, *, layout: str, iteration: int,
                 save_info: Mapping[str, Any], psnr: Optional[float], ssim: Optional[float],
                 lpips: Optional[float], ply_size_bytes: Optional[int],
                 settings: CompressionParams | Mapping[str, Any],
                 extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``<out_dir>/report.json`` (atomic) with the keys the demo reads.

    Args:
        out_dir: the iteration folder (beside bins.zip).
        layout, iteration: which save this is.
        save_info: what :meth:`CodecState.save` returned.
        psnr, ssim, lpips: float-render metrics on the test views (None when unavailable).
        ply_size_bytes: size of the uncompressed standard PLY of the pre-compression model.
        settings: the CompressionParams (or its dict).
        extra: further JSON-serialisable keys (e.g. ``eval_split``).

    Returns:
        Path of report.json.
    """
    settings = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) \
        else dict(settings)
    report = {"layout": layout, "iteration": int(iteration), "psnr": _optional(psnr),
              "ssim": _optional(ssim), "lpips": _optional(lpips),
              **{key: save_info[key] for key in ("size_bytes", "num_gaussians",
                                                  "bits_per_gaussian", "encode_seconds",
                                                  "decode_seconds")},
              "ply_size_bytes": ply_size_bytes, **(extra or {}), "settings": settings}
    path = Path(out_dir) / "report.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _optional(value: Optional[float]) -> Optional[float]:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def append_results_csv(model_path: str | os.PathLike, *, layout: str, iteration: int,
                       psnr: Optional[float], ssim: Optional[float], lpips: Optional[float],
                       size_bytes: int, num_gaussians: int) -> Path:
    """Append one row to ``<model>/compression/results.csv`` (header written when new).

    Row: ``<layout>_<iteration>, PSNR, SSIM, LPIPS (empty when unavailable), size, N``.
    The file is rewritten atomically, so a crash never leaves a half row.
    """
    path = Path(model_path) / "compression" / "results.csv"
    existing = path.read_text() if path.is_file() else ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if not existing:
        writer.writerow(RESULTS_HEADER)
    writer.writerow([f"{layout}_{iteration}", *("" if v is None else f"{float(v):.6f}"
                                                for v in (psnr, ssim, lpips)),
                     int(size_bytes), int(num_gaussians)])
    with atomic_path(path) as tmp:
        tmp.write_text(existing + buffer.getvalue())
    return path
