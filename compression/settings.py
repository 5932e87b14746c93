"""The codec's flags (``CompressionParams``) and their resolution into the settings that run.

Flags that depend on the layout (``percent``, ``depth``, ``n_block``, ``num_bits``,
``quantizer``, ``codebook_size``, ``vq_steps``, ``vq_batch``, ``oct_merge``, ``imp_beta``,
``finetune_iterations``) default to None, "not given". :func:`resolve_settings` applies the
paper configuration (``--hyper_config``, ``presets.py``), fills every unset flag from the
layout record's ``defaults`` and checks the result. The resolved settings are what runs and
what report.json (and cfg_args) record.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from arguments import flag
from compression.layouts import DEFAULT_LAYOUT, LAYOUTS
from compression.octree import MAX_DEPTH, MERGE_MODES
from compression.presets import CONFIGS, preset_settings
from compression.quantization import QUANTIZER_KINDS


#: the flags whose default comes from the layout (``Layout.defaults`` holds each of them)
LAYOUT_SETTINGS = ("percent", "depth", "n_block", "num_bits", "quantizer", "codebook_size",
                   "vq_steps", "vq_batch", "oct_merge", "imp_beta", "finetune_iterations")


def _from_layout(name: str, help: str, choices: Optional[tuple[str, ...]] = None) -> object:
    """Flag ``name`` whose default depends on the layout: None until resolved; ``--help``
    lists each layout's default."""
    defaults = ", ".join(f"{layout.name} {layout.defaults[name]}" for layout in LAYOUTS.values())
    return flag(None, help, choices=choices, default_help=f"from --layout: {defaults}")


@dataclass
class CompressionParams:
    """MesonGS-style codec (``../shared/docs/CODEC.md``); unset layout settings are None."""

    layout: str = flag(DEFAULT_LAYOUT, "attribute layout (compression/layouts.py)",
                       choices=tuple(LAYOUTS))
    percent: Optional[float] = _from_layout("percent", "fraction of Gaussians pruned by "
                                                       "importance")
    depth: Optional[int] = _from_layout("depth", "octree depth D (bits per axis)")
    n_block: Optional[int] = _from_layout("n_block", "blocks per RAHT column (B)")
    num_bits: Optional[int] = _from_layout("num_bits", "bits per quantized code (b)")
    quantizer: Optional[str] = _from_layout("quantizer", "block quantizer",
                                            choices=QUANTIZER_KINDS)
    codebook_size: Optional[int] = _from_layout("codebook_size", "VQ codebook size K (layouts "
                                                "with vector quantization)")
    vq_steps: Optional[int] = _from_layout("vq_steps", "k-means iterations")
    vq_batch: Optional[int] = _from_layout("vq_batch", "k-means batch rows")
    oct_merge: Optional[str] = _from_layout("oct_merge", "merging of Gaussians sharing a voxel",
                                            choices=MERGE_MODES)
    imp_beta: Optional[float] = _from_layout("imp_beta", "volume exponent beta of the importance "
                                             "score")
    finetune_iterations: Optional[int] = _from_layout("finetune_iterations",
                                                      "quantization-aware finetune iterations")
    finetune_test_iterations: list = flag([], "finetune iterations to evaluate and save",
                                          nargs="+", default_help="0, every 1000 and the last")
    finetune_lr_scale: float = flag(1.0, "factor on every finetune learning rate")
    hyper_config: Optional[str] = flag(None, "paper configuration (sets layout, percent, "
                                             "n_block, codebook_size, depth, imp_beta)",
                                       choices=CONFIGS)
    scene_name: Optional[str] = flag(None, "scene for --hyper_config")
    given_ply_path: Optional[str] = flag(None, "compress this trained model instead of training "
                                               "(.ply, compressed .ply, .spz, .sog, .splat, "
                                               ".ksplat)")
    skip_compress: bool = flag(False, "train only")




def resolve_settings(cfg: CompressionParams) -> CompressionParams:
    """The settings that run (a copy): ``cfg`` with the paper configuration applied and every
    unset layout setting taken from the layout, checked. Resolving twice changes nothing.

    Raises:
        ValueError: an unknown layout, paper configuration or scene, or an invalid value.
    """
    cfg = dataclasses.replace(cfg, **preset_settings(cfg.hyper_config, cfg.scene_name))
    layout = LAYOUTS.get(cfg.layout)
    if layout is None:
        raise ValueError(f"CompressionParams: layout must be one of {tuple(LAYOUTS)}, "
                         f"got {cfg.layout!r}")
    resolved = dataclasses.replace(cfg, **{name: layout.defaults[name] for name in LAYOUT_SETTINGS
                                           if getattr(cfg, name) is None})
    problems = [
        (0.0 <= resolved.percent <= 1.0, f"percent must be in [0, 1], got {resolved.percent}"),
        (1 <= resolved.depth <= MAX_DEPTH,
         f"depth must be in [1, {MAX_DEPTH}], got {resolved.depth}"),
        (resolved.n_block >= 1, f"n_block must be >= 1, got {resolved.n_block}"),
        (resolved.codebook_size >= 1 or not layout.vq,
         f"codebook_size must be >= 1, got {resolved.codebook_size}"),
    ]
    for ok, what in problems:
        if not ok:
            raise ValueError(f"CompressionParams: {what}")
    return resolved
