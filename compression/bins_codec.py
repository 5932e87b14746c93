"""The MesonGS "bins" codec family (seed and official layouts): block quantizers, float32 VQ
codebook, the ``bins/`` folder + ``bins.zip`` container (``bins_format.py``, CODEC.md §8).

Block quantization (CODEC.md §6): one min–max ("vanilla") or LSQ quantizer per (column,
block) of b bits over the AC coefficients of each RAHT column and over the rows of each
directly quantized column. The golden tests pin every byte this family writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from compression import pipeline
from compression.bins_format import (BINS, BinsBitstream, is_bins_source, read_bins,
                                     write_bins)
from compression.codec import CodecSettings, CodecState, Layout
from compression.octree import decode_positions, keys_to_codes
from compression.pipeline import coefficients, to_numpy
from compression.quantization import BlockQuantizer, storage_dtype
from compression.raht import build_raht


class BinsCodec:
    """The bins family (:class:`codec.Codec`); its extra: :meth:`init_qas` (rebuild the block
    quantizers) and :meth:`state_from_bitstream` (re-encode a stream at another bit depth)."""

    container = BINS
    unused_settings = ("quality", "base_step", "voxel_ratio")

    # ------------------------------------------------------------------ stages 1-6

    def prepare(self, params: Mapping[str, Tensor], cameras: Optional[Sequence],
                settings: CodecSettings, generator: Optional[torch.Generator] = None, *,
                backend: str = "auto", importance: Optional[Tensor] = None
                ) -> tuple[CodecState, dict[str, Tensor]]:
        """Stages 1-6 (``pipeline.prepare_geometry``, a ``codebook_size`` k-means codebook,
        ``n_block`` × ``num_bits`` block quantizers calibrated once).

        Returns:
            ``(state, params')``: the state (training mode) and the pruned, merged, key-sorted
            parameters (``xyz`` the voxel centres; ``params`` is not changed).

        Raises:
            ValueError: invalid settings, or fewer AC coefficients than blocks.
        """
        geometry = pipeline.prepare_geometry(params, cameras, settings, generator,
                                             backend=backend, importance=importance)
        vq: dict[str, Tensor] = {}
        if pipeline.has_vq_columns(settings, geometry):
            vq["codebook"], vq["vq_indices"], _ = pipeline.vector_quantize(
                geometry, settings, settings.codebook_size)
        with torch.no_grad():
            state = pipeline.new_state(settings.layout, geometry.params, geometry.depth,
                                       geometry.keys, geometry.bbox, num_bits=settings.num_bits,
                                       quantizer_kind=settings.quantizer,
                                       num_input=geometry.num_input, **vq)
            self.init_qas(state, geometry.params, settings.n_block)
        return state, geometry.params

    @torch.no_grad()
    def init_qas(self, state: CodecState, params: Mapping[str, Tensor],
                 n_block: Optional[int] = None) -> BlockQuantizer:
        """(Re)build the block quantizers with ``n_block`` blocks (default: the current B) and
        calibrate their ranges (vanilla) or steps (LSQ) once from ``params``' coefficients and
        direct columns.

        Returns:
            The RAHT quantizer (C·B quantizers, e.g. 55 × 57 = 3,135).

        Raises:
            ValueError: ``params`` do not match the state, or fewer AC coefficients than blocks.
        """
        pipeline.check_params(state, params)
        n_block = state.quantizer.n_block if n_block is None else int(n_block)
        if not 1 <= n_block <= state.num_gaussians - 1:
            raise ValueError(f"n_block must be in [1, N - 1 = {state.num_gaussians - 1}], "
                             f"got {n_block}")
        layout, device = state.layout, state.keys.device
        coeffs = coefficients(state, params)
        state.quantizer = BlockQuantizer(coeffs.shape[1], n_block, state.num_bits,
                                         state.quantizer_kind).to(device)
        state.quantizer.calibrate(coeffs[1:])
        if layout.direct:
            direct = layout.columns(layout.direct, params)
            state.direct_quantizer = BlockQuantizer(direct.shape[1], n_block, state.num_bits,
                                                    state.quantizer_kind).to(device)
            state.direct_quantizer.calibrate(direct)
        state.train(state.training)
        return state.quantizer

    def state_from_bitstream(self, bitstream: BinsBitstream, params: Mapping[str, Tensor],
                             num_bits: Optional[int] = None) -> CodecState:
        """A state over a bitstream's frozen geometry (voxels, RAHT plan, VQ codebook and
        indices) with fresh ``num_bits`` quantizers (default: the stream's) calibrated on
        ``params`` (its decoded parameters): re-encoding at another bit depth without
        retraining."""
        device = params["xyz"].device
        vq: dict[str, Tensor] = {}
        if bitstream.layout.vq:
            vq = {"codebook": torch.from_numpy(bitstream.codebook).to(device),
                  "vq_indices": torch.from_numpy(bitstream.vq_indices.astype(np.int64))
                  .to(device)}
        with torch.no_grad():
            state = pipeline.new_state(
                bitstream.layout, params, bitstream.depth,
                torch.from_numpy(bitstream.keys).to(device),
                torch.from_numpy(bitstream.bbox).to(device),
                num_bits=bitstream.num_bits if num_bits is None else num_bits,
                quantizer_kind=bitstream.quantizer, **vq)
            self.init_qas(state, params, bitstream.n_block)
        return state

    # ------------------------------------------------------------------ the two paths

    def simulate(self, state: CodecState, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """RAHT → block fake quantization → inverse RAHT; direct columns fake-quantized; VQ
        columns from the float32 codebook (:class:`codec.Codec`)."""
        return pipeline.activated(pipeline.reconstruct(state, params, state.codebook),
                                  state.means)

    def simulate_with_rate(self, state: CodecState, params: Mapping[str, Tensor]
                           ) -> tuple[dict[str, Tensor], None]:
        """:meth:`simulate`; no rate model (the MesonGS finetune minimizes the photometric
        loss alone, CODEC.md §7)."""
        return self.simulate(state, params), None

    def trainable(self, state: CodecState, params: Mapping[str, Tensor]
                  ) -> tuple[dict[str, Tensor], list[Tensor]]:
        """The layout's tensors and the LSQ steps (``pipeline.trainable``)."""
        return pipeline.trainable(state, params)

    @torch.no_grad()
    def encode(self, state: CodecState, params: Mapping[str, Tensor]) -> BinsBitstream:
        """Quantize with the current ranges (what is trained is what ships); never moves them."""
        pipeline.check_params(state, params)
        layout = state.layout
        coeffs = coefficients(state, params)
        codes, scale, zero_point = state.quantizer.quantize(coeffs[1:])
        dtype = storage_dtype(state.num_bits)
        optional: dict[str, np.ndarray] = {}
        if layout.direct:
            d_codes, d_scale, d_zero_point = state.direct_quantizer.quantize(
                layout.columns(layout.direct, params))
            optional.update(direct_codes=np.ascontiguousarray(to_numpy(d_codes).T, dtype=dtype),
                            direct_scale=to_numpy(d_scale).astype(np.float64),
                            direct_zero_point=to_numpy(d_zero_point).astype(np.float64))
        if layout.vq:
            optional.update(vq_indices=to_numpy(state.vq_indices).astype(np.int32),
                            codebook=to_numpy(state.codebook).astype(np.float32))
        return BinsBitstream(layout=layout, sh_degree=state.sh_degree, num_bits=state.num_bits,
                             quantizer=state.quantizer_kind, depth=state.depth,
                             keys=to_numpy(state.keys).astype(np.int64),
                             bbox=to_numpy(state.bbox).astype(np.float64),
                             dc=to_numpy(coeffs[0]).astype(np.float32),
                             codes=np.ascontiguousarray(to_numpy(codes).T, dtype=dtype),
                             scale=to_numpy(scale).astype(np.float64),
                             zero_point=to_numpy(zero_point).astype(np.float64), **optional)

    def decode(self, bitstream: BinsBitstream, device: torch.device | str | None = None
               ) -> dict[str, Tensor]:
        """codes → x̂ per block → inverse RAHT → the layout's RAHT columns; direct columns from
        their own codes, VQ columns from the codebook; positions the voxel centres."""
        device = torch.device("cpu") if device is None else torch.device(device)
        layout, d, depth = bitstream.layout, bitstream.sh_degree, bitstream.depth

        def dequantized(codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> Tensor:
            """[Q, L] codes, [Q, B] ranges → [L, Q] float32 values."""
            ranges = [torch.from_numpy(a.astype(np.float32)).to(device)
                      for a in (scale, zero_point)]
            return BlockQuantizer.dequantize(
                torch.from_numpy(codes.astype(np.int32)).to(device).t(), *ranges)

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

    # ------------------------------------------------------------------ the container

    def write(self, bitstream: BinsBitstream, out_dir: str | Path) -> Path:
        """``<out_dir>/bins/`` and ``<out_dir>/bins.zip``; the archive's path."""
        return write_bins(bitstream, out_dir)

    def recognizes(self, path: Path) -> bool:
        """A folder, or a zip archive."""
        return is_bins_source(path)

    def read(self, path: Path, layouts: Mapping[str, Layout]) -> BinsBitstream:
        """A bins folder or bins.zip of one of ``layouts`` (``bins_format.read_bins``)."""
        return read_bins(path, layouts)


#: the bins family's codec object (the seed and official layout records name it)
BINS_CODEC = BinsCodec()
