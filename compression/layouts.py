"""Codec layouts as data: one frozen record per ``--layout`` (``codec.Layout``), the registry
``LAYOUTS``.

A layout says, for the five coded attribute groups (opacity, Euler angles of the rotation,
f_dc, f_rest, log-scales), which ones go through RAHT + quantization of the AC coefficients,
which are quantized directly (rows in voxel-key order) and which are vector-quantized (one
codebook over their columns); the column order of each of those matrices and its inverse; the
files its bitstream holds (bins family); the codec object of its bitstream family (which
quantizes, stores and reads); the tensors the finetune trains; and its default settings (the
values a flag takes when it is not given). The codec objects work from these fields; no other
module compares a layout's name. A new layout is a new record here; a new bitstream family is
one module with its codec object (as ``bins_codec``, ``compact_codec``) and a record here
naming it.

Column order (CODEC.md §4):

* seed (C = 10 + 3·((d+1)²-1), 55 for d = 3): opacity logit, Euler roll/pitch/yaw of the
  normalized quaternion, f_dc RGB, f_rest in the in-memory (N, (d+1)²-1, 3) order flattened,
  log-scale xyz, all through RAHT.
* official (C = 7): opacity, Euler angles, f_dc through RAHT; the 3 log-scales
  block-quantized directly; f_rest vector-quantized.
* compact (C = 10): opacity, Euler angles, f_dc, log-scales through RAHT with a uniform step
  per (column, RAHT level); f_rest vector-quantized with a codebook
  on a uniform grid; one entropy-coded file (docs/COMPACT_FORMAT.md). Its settings come from
  ``--quality`` (``quality_levels``); the octree depth and the codebook size are chosen from
  the model unless given.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from compression.bins_codec import BINS_CODEC
from compression.codec import Codec, FinetuneSchedule, Layout
from compression.compact_codec import COMPACT_CODEC

__all__ = ["LAYOUTS", "DEFAULT_LAYOUT", "PAPER_LAYOUT", "CODECS"]

#: today's MesonGS settings, the defaults of the seed and official layouts
_MESONGS_DEFAULTS = MappingProxyType({
    "percent": 0.2, "depth": 20, "n_block": 57, "num_bits": 8, "quantizer": "vanilla",
    "codebook_size": 4096, "vq_steps": 100, "vq_batch": 65536, "oct_merge": "mean",
    "imp_beta": 0.1, "finetune_iterations": 8000, "quality": None, "base_step": None,
    "voxel_ratio": None,
})
#: the compact layout's knob (docs/COMPACT_FORMAT.md; measured in the README): per quality
#: level the pruned fraction, the f_dc step (the others scale by ``step_weights``), the voxel
#: edge over the median Gaussian's largest scale, and the codebook of a 32,768-Gaussian model.
#: Level 8, the default without a finetune, prunes nothing: there nothing wins back what
#: pruning removes (issue 20: 10 % cost a real 500k-Gaussian model 14 dB of ring fidelity for
#: 10 % of its bytes)
_COMPACT_QUALITY_LEVELS = MappingProxyType({
    quality: MappingProxyType({"percent": percent, "base_step": step, "voxel_ratio": ratio,
                               "codebook_reference": codebook})
    for quality, percent, step, ratio, codebook in (
        (1, 0.50, 1.6, 0.4, 16),
        (2, 0.45, 1.1, 0.28, 16),
        (3, 0.40, 0.6, 0.2, 32),
        (4, 0.35, 0.3, 0.14, 64),
        (5, 0.25, 0.15, 0.1, 128),
        (6, 0.20, 0.1, 0.07, 256),
        (7, 0.15, 0.06, 0.05, 512),
        (8, 0.0, 0.03, 0.03, 1024),
        (9, 0.0, 0.006, 0.006, 2048),
    )})
#: the compact finetune's rates: at the start 16× CODEC.md §7's for the codebook (its rows stand
#: for many Gaussians each, so the f_rest rate moves them too little), 8× for f_dc, scales and
#: rotations, 1× for opacity (more lost PSNR), falling along a half cosine to a tenth of that
#: at the last step. Set on two converged SH-3 models at quality 5, 500 steps (README,
#: "Finetune schedule"): +0.25 and +0.32 dB over the constant rates for +2.3 and +1.5 bits;
#: +0.11 and +0.25 dB on two lego models it was not set on, −0.07 and −0.11 dB on the two
#: real captures of 8 and 20 training views. The finetune ends at the moving average of the
#: trained tensors over its steps (decay 0.98 per step, about the last 50 steps): +0.03 dB on
#: both models it was set on for no more bits (README, "Finetune schedule"). Its loss weighs
#: the rate model's bits per coded Gaussian by 1e-4 (README, "Rate term")
COMPACT_FINETUNE_SCHEDULE = FinetuneSchedule(MappingProxyType({
    "codebook": (16.0, 1.6), "f_dc": (8.0, 0.8), "scaling": (8.0, 0.8), "rotation": (8.0, 0.8)}),
    average_decay=0.98, rate_weight=1e-4)
_COMPACT_DEFAULTS = MappingProxyType({
    "percent": None, "depth": None, "n_block": None, "num_bits": None, "quantizer": None,
    "codebook_size": None, "vq_steps": 20, "vq_batch": 32768, "oct_merge": "mean",
    "imp_beta": 0.1, "finetune_iterations": 500, "quality": 5, "base_step": None,
    "voxel_ratio": None,
})

LAYOUTS: Mapping[str, Layout] = MappingProxyType({layout.name: layout for layout in (
    Layout(name="seed", raht=("opacity", "euler", "f_dc", "f_rest", "scaling"), direct=(),
           vq=(), trains=("f_dc", "f_rest", "opacity", "scaling", "rotation"),
           files=("oct.npz", "orgb.npz", "t.npz"), codec=BINS_CODEC,
           defaults=_MESONGS_DEFAULTS),
    Layout(name="official", raht=("opacity", "euler", "f_dc"), direct=("scaling",),
           vq=("f_rest",), trains=("f_dc", "codebook", "opacity", "scaling", "rotation"),
           files=("oct.npz", "orgb.npz", "t.npz", "ct.npz", "ntk.npz", "um.npz"),
           codec=BINS_CODEC, defaults=_MESONGS_DEFAULTS),
    Layout(name="compact", raht=("opacity", "euler", "f_dc", "scaling"), direct=(),
           vq=("f_rest",), trains=("f_dc", "codebook", "opacity", "scaling", "rotation"),
           files=(), codec=COMPACT_CODEC, defaults=_COMPACT_DEFAULTS,
           quality_levels=_COMPACT_QUALITY_LEVELS, quality_without_finetune=8,
           step_weights=MappingProxyType({"opacity": 2.0, "euler": 0.2, "f_dc": 1.0,
                                          "scaling": 0.75}),
           camera_free_area=True,
           finetune_schedule=COMPACT_FINETUNE_SCHEDULE),
)})

#: the codec families, one object each, in the order of their first layout
CODECS: tuple[Codec, ...] = tuple(dict.fromkeys(layout.codec for layout in LAYOUTS.values()))

#: ``--layout`` when not given
DEFAULT_LAYOUT = "seed"
#: the layout of the paper's configurations (``--hyper_config``)
PAPER_LAYOUT = "official"
