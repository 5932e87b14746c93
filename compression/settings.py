"""The codec's flags (``CompressionParams``) and their resolution into the settings that run.

Flags that depend on the layout (``percent``, ``depth``, ``n_block``, ``num_bits``,
``quantizer``, ``codebook_size``, ``vq_steps``, ``vq_batch``, ``oct_merge``, ``imp_beta``,
``finetune_iterations``, ``quality``, ``base_step``, ``voxel_ratio``) default to None, "not
given". :func:`resolve_settings` applies the paper configuration (``--hyper_config``,
``presets.py``), then fills every unset flag from the layout's quality level (``--quality``,
layouts that have the knob) and from the layout record's ``defaults``, and checks the result.
A setting the layout chooses from the model (compact: ``depth``, ``codebook_size``) stays None;
one its codec does not use (``Codec.unused_settings``) must not be given. A size target
(``--target_size`` / ``--target_bits``, layouts with a quality ladder) leaves the quality, the
pruned fraction, the step and the voxel ratio unset: ``compression.size_target`` searches them
on the model (a given ``--depth`` or ``--codebook_size`` stays fixed). The resolved flags
are what report.json (and cfg_args) record; :func:`codec_settings` narrows them to the frozen
``codec.CodecSettings`` the codec takes. The code that starts a compression resolves once
(``training.compress.resolve_compression``); nothing in ``compression/`` resolves.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
from dataclasses import dataclass
from fractions import Fraction
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
#: the size-target flags (one at most), and the flags a target replaces (its search sets them)
TARGET_FLAGS = ("target_size", "target_bits")
TARGET_REPLACES = ("quality", "percent", "base_step", "voxel_ratio")
#: ``--target_size`` suffixes (case-insensitive) and their byte counts
SIZE_UNITS = {"": 1, "b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "kib": 2 ** 10, "mib": 2 ** 20}
_SIZE_TEXT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


class SizeError(argparse.ArgumentTypeError, ValueError):
    """A size that does not parse (argparse prints its message as it is)."""


class ByteSize(int):
    """A byte count given as text: ``200000``, ``200KB`` (10^3), ``1.5MB`` (10^6), ``64KiB``
    (2^10), ``2MiB`` (2^20); suffixes are case-insensitive, a fraction of a byte is dropped.

    Raises:
        SizeError: not a number with one of :data:`SIZE_UNITS`, or below one byte.
    """

    def __new__(cls, text: "str | int") -> "ByteSize":
        match = _SIZE_TEXT.fullmatch(str(text))
        unit = SIZE_UNITS.get(match.group(2).lower()) if match else None
        if unit is None:
            raise SizeError(f"not a size: {str(text)!r} (bytes, or a number with KB, MB, KiB "
                            f"or MiB)")
        value = math.floor(Fraction(match.group(1)) * unit)
        if value < 1:
            raise SizeError(f"a size must be at least 1 byte, got {str(text)!r}")
        return super().__new__(cls, value)


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
    target_size: Optional[ByteSize] = flag(
        None, "the size of the last saved bitstream.gsc (--layout compact): bytes, or a number "
              "with KB (10^3), MB (10^6), KiB (2^10) or MiB (2^20). The layout searches the "
              "quality ladder between and beyond its levels (pruning, steps, voxel size, "
              "codebook) so that the file lands within 97 to 100 percent of it; replaces "
              "--quality, --percent, --base_step and --voxel_ratio")
    target_bits: Optional[float] = flag(None, "the same target given in bits per input "
                                              "Gaussian")
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
    target = _check_target(cfg, layout)
    quality = cfg.quality
    if quality is None and not target:
        quality = layout.defaults["quality"]
        iterations = (cfg.finetune_iterations if cfg.finetune_iterations is not None
                      else layout.defaults["finetune_iterations"])
        if not (scene and iterations) and layout.quality_without_finetune is not None:
            quality = layout.quality_without_finetune
    if layout.quality_levels and not target and quality not in layout.quality_levels:
        low, high = QUALITY_RANGE
        raise ValueError(f"CompressionParams: quality must be an integer in [{low}, {high}], "
                         f"got {quality}")
    level = layout.quality_levels.get(quality, {})
    searched = TARGET_REPLACES if target else ("quality",)
    resolved = dataclasses.replace(cfg, quality=quality, **{
        name: level.get(name, layout.defaults[name]) for name in LAYOUT_SETTINGS
        if getattr(cfg, name) is None and name not in searched})
    problems = [
        (resolved.percent is None or 0.0 <= resolved.percent <= 1.0,
         f"percent must be in [0, 1], got {resolved.percent}"),
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


def _check_target(cfg: CompressionParams, layout: Any) -> Optional[str]:
    """The size-target flag ``cfg`` gives (None without one), checked: one of them, on a layout
    with a quality ladder to search, without the flags it replaces.

    Raises:
        ValueError: both targets, a layout without a ladder, a replaced flag given, or a
            target that is not positive.
    """
    given = [name for name in TARGET_FLAGS if getattr(cfg, name) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ValueError("give --target_size or --target_bits, not both")
    target = given[0]
    if not layout.quality_levels:
        searchable = ", ".join(name for name, other in LAYOUTS.items() if other.quality_levels)
        raise ValueError(f"--{target}: --layout {layout.name} has fixed settings, no quality "
                         f"ladder to search (use --layout {searchable})")
    replaced = [name for name in TARGET_REPLACES if getattr(cfg, name) is not None]
    if replaced:
        raise ValueError(f"--{target} chooses {', '.join('--' + name for name in replaced)} "
                         f"itself: give the target or those settings, not both")
    if target == "target_bits" and not (cfg.target_bits > 0 and math.isfinite(cfg.target_bits)):
        raise ValueError(f"--target_bits must be a positive number, got {cfg.target_bits}")
    if target == "target_size":
        ByteSize(cfg.target_size)  # a value set in code is checked as the flag would be
    return target


def codec_settings(resolved: CompressionParams) -> CodecSettings:
    """The frozen settings the codec takes, from flags :func:`resolve_settings` resolved
    (the layout as its record; the finetune, file and paper-configuration flags left out).

    Raises:
        ValueError: ``resolved`` has a layout-dependent setting unset that the layout uses.
    """
    layout = LAYOUTS[resolved.layout]
    searched = TARGET_REPLACES if any(getattr(resolved, name) is not None
                                      for name in TARGET_FLAGS) else ()
    chosen = ("depth", "codebook_size", *layout.codec.unused_settings, *searched)
    unset = [name for name in LAYOUT_SETTINGS if getattr(resolved, name) is None
             and name not in chosen]
    if unset:
        raise ValueError(f"codec_settings: {', '.join(unset)} unset (resolve_settings first)")
    return CodecSettings(layout=layout, **{
        field.name: getattr(resolved, field.name) for field in dataclasses.fields(CodecSettings)
        if field.name not in ("layout", "ladder_position")})
