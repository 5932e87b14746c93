"""The compact codec family (``--layout compact``): a fixed uniform step per (column, RAHT
level) (``step_quantization.LevelQuantizer``), the VQ codebook on a uniform grid, one
entropy-coded file ``bitstream.gsc`` (``compact_format.py``, docs/COMPACT_FORMAT.md).

Decoding is exact: a decoded model renders bit for bit what :meth:`CompactCodec.simulate`
gives in evaluation mode (the simulation activates contiguous copies and unit quaternions, as
the decoded model does), and reproducible on every machine (Euler → quaternion and the inverse
RAHT in their reproducible forms, without fused multiply-adds; docs/COMPACT_FORMAT.md §4, §7).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from compression import pipeline
from compression.codec import GROUPS, CodecSettings, CodecState, Layout
from compression.compact_format import (COMPACT, CompactBitstream, camera_up, is_compact_file,
                                        read_compact, write_compact)
from compression.ladder import ladder_codebook_size
from compression.octree import decode_positions, keys_to_codes
from compression.pipeline import coefficients, to_numpy
from compression.step_quantization import (CODEBOOK_NOISE_SHARE, FAITHFUL_CODEBOOK_NOISE_SHARE,
                                           LevelQuantizer, choose_exponents, codebook_exponent,
                                           fake_quantize, grid_codes, step_values)

#: auto codebook size: ``codebook_reference`` entries for a model of this many coded
#: Gaussians, scaled by sqrt(N / reference), rounded to a power of two, within this range
CODEBOOK_REFERENCE_GAUSSIANS = 32768
AUTO_CODEBOOK_RANGE = (16, 4096)
#: levels from this one on (those without a finetune) take a model's own f_rest palette as the
#: codebook when it has one (``pipeline.palette_rows``): at most this many distinct rows (the
#: format's limit on K), each used 4 times on average (vq_kmeans's N // 4)
PALETTE_MIN_QUALITY = 8
MAX_PALETTE = 65536
#: the grid step of a palette codebook, over ``base_step``: its rounding then costs f_rest about
#: what the f_dc step costs f_dc (8 SH-2 rows under the finer step ≈ 3 DC values)
PALETTE_STEP_WEIGHT = 0.25
#: f_rest energy (importance-weighted mean square of the VQ values) up to which a level's
#: ``codebook_reference`` suffices. A model whose f_rest carries more (converged SH bands) gets a
#: codebook larger by the ratio to the power ENERGY_EXPONENT, at most ENERGY_GROWTH_MAX times
#: (README, "codebook size"): at a fixed k-means error the entries grow as energy^(F/2) for F
#: effective dimensions, and the k-means error falls as K^-0.28 (F ≈ 7). The reference is set
#: where two converged SH-3 models (1.25e-3 and 1.46e-3) get the 8× codebook that brings them
#: within 0.1 dB of SOG; the bundled scene (8.0e-4) keeps its level's size
REFERENCE_F_REST_ENERGY = 0.75e-3
ENERGY_EXPONENT = 3.5
ENERGY_GROWTH_MAX = 8.0
#: the energy grows the codebook up to the power of two nearest N / ENERGY_TABLE_SHARE entries
#: at most (never below the level's own size): beyond, its table (K × F values) outweighs what
#: the finer indices save (the shared PLY without a scene: 100.7 → 160.3 bits per Gaussian at
#: quality 8)
ENERGY_TABLE_SHARE = 16
#: rows per chunk of the energy sum (no [N, F] temporary at million scale)
_ENERGY_CHUNK_ROWS = 65536


def f_rest_energy(columns: Tensor, weights: Tensor) -> float:
    """Importance-weighted mean square of the VQ columns [N, F] per value (weights [N]): how
    much the upper SH bands carry where the renders see them. 0 for no columns or weight."""
    w = weights.detach().to(torch.float64).clamp_min(0)
    total = float(w.sum()) * columns.shape[1]
    if total <= 0:
        return 0.0
    energy = sum(float(part_w @ part.detach().to(torch.float64).square().sum(1))
                 for part, part_w in zip(torch.split(columns, _ENERGY_CHUNK_ROWS),
                                         torch.split(w, _ENERGY_CHUNK_ROWS)))
    return energy / total


def auto_codebook_size(layout: Layout, position: float, num_gaussians: int,
                       energy: float = 0.0) -> int:
    """The codebook size a layout's quality ladder gives a model of ``num_gaussians`` coded
    Gaussians at ``position`` (a ``--quality`` level, or a real position between levels) whose
    f_rest carries ``energy`` (:func:`f_rest_energy`).

    The ladder's size (a level's ``codebook_reference`` × sqrt(N / 32768), rounded to a power
    of two within :data:`AUTO_CODEBOOK_RANGE`, interpolated between levels:
    ``ladder.ladder_codebook_size``) times (energy / REFERENCE_F_REST_ENERGY) ^
    ENERGY_EXPONENT rounded to a power of two in [1, ENERGY_GROWTH_MAX], the growth not beyond
    the power of two nearest N / ENERGY_TABLE_SHARE entries (vq_kmeans further caps the size at
    N // 4)."""
    level = ladder_codebook_size(layout.quality_levels, position, num_gaussians,
                                 CODEBOOK_REFERENCE_GAUSSIANS, AUTO_CODEBOOK_RANGE)
    growth = min(max((energy / REFERENCE_F_REST_ENERGY) ** ENERGY_EXPONENT, 1.0),
                 ENERGY_GROWTH_MAX)
    grown = min(level * 2 ** round(math.log2(growth)), AUTO_CODEBOOK_RANGE[1])
    table_cap = 2 ** round(math.log2(max(num_gaussians / ENERGY_TABLE_SHARE, 1.0)))
    # both bounds grow with the level: the size never falls along the ladder
    return max(level, min(grown, table_cap))


def codebook_noise_share(layout: Layout, position: Optional[float]) -> float:
    """The codebook grid's rounding noise over the k-means error at a ``--quality`` position:
    :data:`FAITHFUL_CODEBOOK_NOISE_SHARE` from the layout's level without a finetune on (the
    faithful copies keep their rates), else :data:`CODEBOOK_NOISE_SHARE` (settings given
    explicitly, position None, count as the finetuned default)."""
    faithful = (layout.quality_without_finetune is not None
                and (position or 0) >= layout.quality_without_finetune)
    return FAITHFUL_CODEBOOK_NOISE_SHARE if faithful else CODEBOOK_NOISE_SHARE


def _codebook_step(state: CodecState) -> Tensor:
    """The float32 step of the grid codebook, on the codebook's device."""
    return step_values([state.codebook_exponent]).to(state.codebook.device)


class CompactCodec:
    """The compact family (:class:`codec.Codec`)."""

    container = COMPACT
    unused_settings = ("n_block", "num_bits", "quantizer")

    def prepare(self, params: Mapping[str, Tensor], cameras: Optional[Sequence],
                settings: CodecSettings, generator: Optional[torch.Generator] = None, *,
                backend: str = "auto", importance: Optional[Tensor] = None
                ) -> tuple[CodecState, dict[str, Tensor]]:
        """Stages 1-6 (``pipeline.prepare_geometry``; a codebook of ``codebook_size`` rows, or
        when unset the model's own f_rest palette at levels from :data:`PALETTE_MIN_QUALITY`
        on, else :func:`auto_codebook_size` of the f_rest energy; its grid step from the
        k-means error (a palette's: ``base_step`` × :data:`PALETTE_STEP_WEIGHT`); steps from
        ``base_step``; the scene's up vector from the cameras).

        Returns:
            ``(state, params')`` as :meth:`codec.Codec.prepare`.
        """
        geometry = pipeline.prepare_geometry(params, cameras, settings, generator,
                                             backend=backend, importance=importance)
        n = int(geometry.keys.shape[0])
        vq: dict = {}
        if pipeline.has_vq_columns(settings, geometry):
            palette = (pipeline.palette_rows(params, settings.layout, min(MAX_PALETTE, n // 4))
                       if settings.codebook_size is None
                       and (settings.position or 0) >= PALETTE_MIN_QUALITY else None)
            columns = pipeline.vq_columns(geometry, settings)
            if palette is not None:
                codebook = palette.to(columns.dtype)
                indices = pipeline.palette_indices(columns, codebook)
                exponent = codebook_exponent(codebook, 0.0,
                                             step=settings.base_step * PALETTE_STEP_WEIGHT)
            else:
                size = (settings.codebook_size if settings.codebook_size is not None
                        else auto_codebook_size(settings.layout, settings.position, n,
                                                f_rest_energy(columns, geometry.voxel_scores)))
                codebook, indices, columns = pipeline.vector_quantize(geometry, settings, size,
                                                                      columns)
                with torch.no_grad():
                    vq_mse = float(((columns - codebook[indices]) ** 2).mean())
                exponent = codebook_exponent(
                    codebook, vq_mse,
                    share=codebook_noise_share(settings.layout, settings.position))
            vq = {"codebook": codebook, "vq_indices": indices, "codebook_exponent": exponent}
        with torch.no_grad():
            state = pipeline.new_state(settings.layout, geometry.params, geometry.depth,
                                       geometry.keys, geometry.bbox,
                                       num_input=geometry.num_input,
                                       quality=settings.quality or 0, **vq)
            self._init_level_quantizer(state, geometry.params, settings.base_step)
        state.up = camera_up(cameras)
        return state, geometry.params

    @staticmethod
    def _init_level_quantizer(state: CodecState, params: Mapping[str, Tensor],
                              base_step: float) -> LevelQuantizer:
        """Fix the steps: ``base_step`` × each column's group weight, per (column, RAHT level)
        (:func:`step_quantization.choose_exponents`)."""
        layout = state.layout
        weights = [layout.step_weights[name] for name in layout.raht
                   for _ in range(GROUPS[name].width(state.sh_degree))]
        coeffs = coefficients(state, params)
        slot_levels = state.plan.slot_levels()
        exponents = choose_exponents(coeffs, slot_levels, len(state.plan.levels),
                                     base_step * torch.tensor(weights, dtype=torch.float64))
        state.quantizer = LevelQuantizer(exponents, slot_levels).to(state.keys.device)
        return state.quantizer

    def simulate(self, state: CodecState, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """RAHT → level fake quantization → inverse RAHT; VQ rows from the codebook rounded to
        its grid (straight-through); contiguous parameters (elementwise kernels such as sigmoid
        may round a strided view differently in the last bit) and unit quaternions
        (``GaussianModel.get_rotation`` normalizes), so that a decoded model renders the same
        bits (:class:`codec.Codec`)."""
        return self._simulate(state, params, coefficients(state, params))

    def simulate_with_rate(self, state: CodecState, params: Mapping[str, Tensor]
                           ) -> tuple[dict[str, Tensor], Tensor]:
        """:meth:`simulate` and the rate model's bits per coded Gaussian of the RAHT columns'
        AC codes (``LevelQuantizer.estimated_bits``: about half the file; the octree and the VQ
        indices do not change in the finetune, and weighing the codebook's codes too cost more
        PSNR than the bits it saved: README, "Rate term")."""
        coeffs = coefficients(state, params)
        return (self._simulate(state, params, coeffs),
                state.quantizer.estimated_bits(coeffs) / state.num_gaussians)

    @staticmethod
    def _simulate(state: CodecState, params: Mapping[str, Tensor], coeffs: Tensor
                  ) -> dict[str, Tensor]:
        """:meth:`simulate` given ``params``' RAHT coefficients."""
        codebook = None if state.codebook is None else fake_quantize(
            state.codebook, _codebook_step(state).to(state.codebook.dtype))
        raw = {name: value.contiguous()
               for name, value in pipeline.reconstruct(state, params, codebook, exact=True,
                                                        coeffs=coeffs).items()}
        raw["rotation"] = nn.functional.normalize(raw["rotation"], dim=-1)
        return pipeline.activated(raw, state.means)

    def trainable(self, state: CodecState, params: Mapping[str, Tensor]
                  ) -> tuple[dict[str, Tensor], list[Tensor]]:
        """The layout's tensors (``pipeline.trainable``; level steps are not learned)."""
        return pipeline.trainable(state, params)

    @torch.no_grad()
    def encode(self, state: CodecState, params: Mapping[str, Tensor]) -> CompactBitstream:
        """AC codes of the level quantizer, the codebook's grid codes."""
        pipeline.check_params(state, params)
        coeffs = coefficients(state, params)
        if state.codebook is None:
            vq_indices, codebook, exponent = (np.zeros(0, np.int64), np.zeros((0, 0), np.int64),
                                              0)
        else:
            vq_indices = to_numpy(state.vq_indices).astype(np.int64)
            codebook = to_numpy(grid_codes(state.codebook, _codebook_step(state),
                                           "codebook entries"))
            exponent = state.codebook_exponent
        return CompactBitstream(
            layout=state.layout, sh_degree=state.sh_degree, depth=state.depth,
            quality=state.quality, bbox=to_numpy(state.bbox).astype(np.float64),
            voxels=to_numpy(keys_to_codes(state.keys, state.depth)),
            dc=to_numpy(coeffs[0]).astype(np.float32),
            exponents=to_numpy(state.quantizer.exponents),
            codes=to_numpy(state.quantizer.quantize(coeffs)),
            vq_indices=vq_indices, codebook_codes=codebook, codebook_exponent=exponent,
            plan=state.plan, up=state.up)

    def decode(self, bitstream: CompactBitstream, device: torch.device | str | None = None
               ) -> dict[str, Tensor]:
        """x̂ = q · step per (column, level), the same float32 ops as :meth:`simulate`, so the
        result equals the finetune's evaluation-mode render input."""
        device = torch.device("cpu") if device is None else torch.device(device)
        layout, d = bitstream.layout, bitstream.sh_degree
        slot_steps = LevelQuantizer.steps_of(bitstream.exponents, bitstream.plan.slot_levels())
        ac = LevelQuantizer.dequantize(torch.from_numpy(bitstream.codes).to(device),
                                       slot_steps.to(device))
        dc = torch.from_numpy(bitstream.dc).to(device)
        rows = bitstream.plan.inverse(torch.cat([dc[None], ac]), exact=True)
        raw = layout.params_from_columns(layout.raht, rows, d, exact=True)
        n = bitstream.num_gaussians
        rest = (torch.from_numpy(bitstream.codebook).to(device)[
            torch.from_numpy(bitstream.vq_indices).to(device)] if bitstream.codebook_size
            else torch.zeros((n, 0), device=device))
        raw.update(layout.params_from_columns(layout.vq, rest, d, exact=True))
        voxels = torch.from_numpy(bitstream.voxels).to(device)
        means = decode_positions(voxels, torch.from_numpy(bitstream.bbox), bitstream.depth)
        return {"xyz": means.to(torch.float32), **{k: v.contiguous() for k, v in raw.items()}}

    def write(self, bitstream: CompactBitstream, out_dir: str | Path) -> Path:
        """``<out_dir>/bitstream.gsc``."""
        return write_compact(bitstream, out_dir)

    def recognizes(self, path: Path) -> bool:
        """A file starting with the compact magic."""
        return is_compact_file(path)

    def read(self, path: Path, layouts: Mapping[str, Layout]) -> CompactBitstream:
        """A ``bitstream.gsc`` (of this codec's one layout)."""
        (layout,) = layouts.values()
        return read_compact(path, layout)


#: the compact family's codec object (the compact layout record names it)
COMPACT_CODEC = CompactCodec()
