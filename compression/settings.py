"""The codec's flags (``CompressionParams``) and their resolution into the settings that run.

Flags that depend on the layout (``percent``, ``depth``, ``n_block``, ``num_bits``,
``quantizer``, ``codebook_size``, ``vq_steps``, ``vq_batch``, ``oct_merge``, ``imp_beta``,
``finetune_iterations``, ``quality``, ``base_step``, ``voxel_ratio``) default to None, "not
given". :func:`resolve_settings` applies the paper configuration (``--hyper_config``,
``presets.py``), then fills every unset flag from the layout's quality level (``--quality``,
layouts that have the knob) and from the layout record's ``defaults``, and checks the result.
A setting the layout chooses from the model (compact: ``depth``, ``codebook_size``) stays None;
one its codec does not use (``Codec.unused_settings``) must not be given. The resolved flags
are what report.json (and cfg_args) record; :func:`codec_settings` narrows them to the frozen
``codec.CodecSettings`` the codec takes. The code that starts a compression resolves once
(``training.compress.resolve_compression``); nothing in ``compression/`` resolves.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from arguments import flag
from compression.codec import CodecSettings
from compression.layouts import DEFAULT_LAYOUT, LAYOUTS
from compression.octree import MAX_DEPTH, MERGE_MODES
from compression.presets import CONFIGS, preset_settings
from compression.quantization import QUANTIZER_KINDS


#: the flags whose default comes from the layout (``Layout.defaults`` holds each of them)
LAYOUT_SETTINGS = ("percent", "depth", "n_block", "num_bits", "quantizer", "codebook_size",
                   "vq_steps", "vq_batch", "oct_merge", "imp_beta", "finetune_iterations",
                   "quality", "base_step", "voxel_ratio")
#: ``--quality`` levels, 1 (smallest file) to 9 (best fidelity)
QUALITY_RANGE = (1, 9)


def _default_text(layout: Any, name: str) -> str:
    """How ``--help`` describes a layout's default for setting ``name``."""
    if name in layout.codec.unused_settings:
        return "unused"
    if name == "quality" and layout.quality_without_finetune is not None:
        return f"{layout.defaults[name]} ({layout.quality_without_finetune} without a finetune)"
    if layout.defaults[name] is not None:
        return str(layout.defaults[name])
    return "from --quality" if layout.quality_levels and any(
        name in level for level in layout.quality_levels.values()) else "from the model"


def _from_layout(name: str, help: str, choices: Optional[tuple[str, ...]] = None) -> object:
    """Flag ``name`` whose default depends on the layout: None until resolved; ``--help``
    lists each layout's default."""
    defaults = ", ".join(f"{layout.name} {_default_text(layout, name)}"
                         for layout in LAYOUTS.values())
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
    quality: Optional[int] = _from_layout("quality", "trade-off knob 1 (smallest) .. 9 (best): "
                                          "sets the pruning, steps, depth and codebook that "
                                          "are not given")
    base_step: Optional[float] = _from_layout("base_step", "uniform quantization step of the "
                                              "f_dc RAHT coefficients (the other columns' steps "
                                              "scale with it)")
    voxel_ratio: Optional[float] = _from_layout("voxel_ratio", "voxel edge over the median "
                                                "Gaussian's largest scale: picks the octree "
                                                "depth when --depth is not given")
    finetune_test_iterations: list = flag([], "finetune iterations to evaluate and save",
                                          nargs="+", default_help="0, every 1000 and the last")
    finetune_lr_scale: float = flag(1.0, "factor on every finetune learning rate")
    hyper_config: Optional[str] = flag(None, "paper configuration (sets layout, percent, "
                                             "n_block, codebook_size, depth, imp_beta)",
                                       choices=CONFIGS)
    scene_name: Optional[str] = flag(None, "scene for --hyper_config")
    given_ply_path: Optional[str] = flag(None, "compress this trained model instead of training "
                                               "(.ply, compressed .ply, .spz, .sog, .splat, "
                                               ".ksplat, or our bins.zip / .gsc, decoded)")
    skip_compress: bool = flag(False, "train only")


def resolve_settings(cfg: CompressionParams, *, scene: bool = True) -> CompressionParams:
    """The settings that run (a copy): ``cfg`` with the paper configuration applied and every
    unset layout setting taken from the layout, checked. Resolving twice changes nothing.

    ``scene``: a scene is there to finetune on. Without one, or with 0 finetune iterations,
    an unset quality is the layout's ``quality_without_finetune`` where it has one.

    Raises:
        ValueError: an unknown layout, paper configuration or scene, or an invalid value.
    """
    cfg = dataclasses.replace(cfg, **preset_settings(cfg.hyper_config, cfg.scene_name))
    layout = LAYOUTS.get(cfg.layout)
    if layout is None:
        raise ValueError(f"CompressionParams: layout must be one of {tuple(LAYOUTS)}, "
                         f"got {cfg.layout!r}")
    given_unused = [name for name in layout.codec.unused_settings
                    if getattr(cfg, name) is not None]
    if given_unused:
        raise ValueError(f"CompressionParams: --layout {layout.name} does not use "
                         f"{', '.join('--' + name for name in given_unused)}")
    quality = cfg.quality
    if quality is None:
        quality = layout.defaults["quality"]
        iterations = (cfg.finetune_iterations if cfg.finetune_iterations is not None
                      else layout.defaults["finetune_iterations"])
        if not (scene and iterations) and layout.quality_without_finetune is not None:
            quality = layout.quality_without_finetune
    if layout.quality_levels and quality not in layout.quality_levels:
        low, high = QUALITY_RANGE
        raise ValueError(f"CompressionParams: quality must be an integer in [{low}, {high}], "
                         f"got {quality}")
    level = layout.quality_levels.get(quality, {})
    resolved = dataclasses.replace(cfg, quality=quality, **{
        name: level.get(name, layout.defaults[name]) for name in LAYOUT_SETTINGS
        if getattr(cfg, name) is None and name != "quality"})
    problems = [
        (0.0 <= resolved.percent <= 1.0, f"percent must be in [0, 1], got {resolved.percent}"),
        (resolved.depth is None or 1 <= resolved.depth <= MAX_DEPTH,
         f"depth must be in [1, {MAX_DEPTH}], got {resolved.depth}"),
        (resolved.n_block is None or resolved.n_block >= 1,
         f"n_block must be >= 1, got {resolved.n_block}"),
        (resolved.codebook_size is None or resolved.codebook_size >= 1 or not layout.vq,
         f"codebook_size must be >= 1, got {resolved.codebook_size}"),
        (resolved.base_step is None or resolved.base_step > 0,
         f"base_step must be > 0, got {resolved.base_step}"),
        (resolved.voxel_ratio is None or resolved.voxel_ratio > 0,
         f"voxel_ratio must be > 0, got {resolved.voxel_ratio}"),
    ]
    for ok, what in problems:
        if not ok:
            raise ValueError(f"CompressionParams: {what}")
    return resolved


def codec_settings(resolved: CompressionParams) -> CodecSettings:
    """The frozen settings the codec takes, from flags :func:`resolve_settings` resolved
    (the layout as its record; the finetune, file and paper-configuration flags left out).

    Raises:
        ValueError: ``resolved`` has a layout-dependent setting unset that the layout uses.
    """
    layout = LAYOUTS[resolved.layout]
    chosen = ("depth", "codebook_size", *layout.codec.unused_settings)
    unset = [name for name in LAYOUT_SETTINGS if getattr(resolved, name) is None
             and name not in chosen]
    if unset:
        raise ValueError(f"codec_settings: {', '.join(unset)} unset (resolve_settings first)")
    return CodecSettings(layout=layout, **{
        field.name: getattr(resolved, field.name) for field in dataclasses.fields(CodecSettings)
        if field.name != "layout"})
