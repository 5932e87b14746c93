"""Codec layouts as data: one frozen record per ``--layout``, the registry ``LAYOUTS``.

A layout says, for the five coded attribute groups (opacity, Euler angles of the rotation,
f_dc, f_rest, log-scales), which ones go through RAHT + block quantization of the AC
coefficients, which are block-quantized directly (rows in voxel-key order) and which are
vector-quantized (one codebook over their columns); the column order of each of those
matrices and its inverse; the files its bitstream holds and the container that writes them;
its quantizer scheme; the tensors the finetune trains; and its default settings (the values
a flag takes when it is not given). The codec core (``pipeline``, ``bitstream``) dispatches on
these fields; no other module compares a layout's name. A new layout is a new record here
(plus its stage modules, quantizer scheme or container when it needs new ones).

Column order (CODEC.md §4):

* seed (C = 10 + 3·((d+1)²-1), 55 for d = 3): opacity logit, Euler roll/pitch/yaw of the
  normalized quaternion, f_dc RGB, f_rest in the in-memory (N, (d+1)²-1, 3) order flattened,
  log-scale xyz, all through RAHT.
* official (C = 7): opacity, Euler angles, f_dc through RAHT; the 3 log-scales
  block-quantized directly; f_rest vector-quantized.
* compact (C = 10): opacity, Euler angles, f_dc, log-scales through RAHT with a uniform step
  per (column, RAHT level) ("level" quantizer scheme); f_rest vector-quantized with a codebook
  on a uniform grid; one entropy-coded file (docs/COMPACT_FORMAT.md). Its settings come from
  ``--quality`` (``quality_levels``); the octree depth and the codebook size are chosen from
  the model unless given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from compression.euler import euler_to_quat, euler_to_quat_exact, quat_to_euler
from utils.output_paths import BINS_DIR, BINS_ZIP, COMPACT_FILE
from utils.sh_utils import sh_degree_of

__all__ = ["AttributeGroup", "Container", "Layout", "GROUPS", "LAYOUTS", "DEFAULT_LAYOUT",
           "PAPER_LAYOUT", "CODED_PARAMS", "BINS", "COMPACT", "rest_columns",
           "sh_degree_of_params"]

#: parameters the codec codes (``xyz`` becomes the voxel centres instead)
CODED_PARAMS = ("f_dc", "f_rest", "opacity", "scaling", "rotation")


def rest_columns(sh_degree: int) -> int:
    """Number of f_rest values per Gaussian, 3·((d+1)² − 1)."""
    return 3 * ((sh_degree + 1) ** 2 - 1)


def sh_degree_of_params(params: Mapping[str, Tensor]) -> int:
    """SH degree d of raw parameters, from f_rest's [N, (d+1)² − 1, 3] shape.

    Raises:
        ValueError: f_rest's row count is not (d+1)² − 1 for any degree.
    """
    degree = sh_degree_of(params["f_rest"].shape[1] + 1)
    if degree is None:
        raise ValueError(f"f_rest has {params['f_rest'].shape[1]} coefficients per channel, "
                         f"not (d+1)^2 - 1 for an SH degree d")
    return degree


@dataclass(frozen=True)
class AttributeGroup:
    """One coded attribute: its parameter, its columns, and back.

    Attributes:
        name: group name used by the layouts ("opacity", "euler", "f_dc", "f_rest", "scaling").
        param: the GaussianModel parameter it codes.
        width: number of columns at SH degree d.
        to_columns: raw parameter [N, ...] → [N, width] columns.
        from_columns: ([N, width] columns, d) → raw parameter [N, ...].
        exact_from_columns: the same, reproducible bit for bit on every machine, for the
            layouts with ``exact_decode`` (None: ``from_columns`` already is).
    """

    name: str
    param: str
    width: Callable[[int], int]
    to_columns: Callable[[Tensor], Tensor]
    from_columns: Callable[[Tensor, int], Tensor]
    exact_from_columns: Callable[[Tensor, int], Tensor] | None = None

    def inverse(self, exact: bool) -> Callable[[Tensor, int], Tensor]:
        """``from_columns``, or its reproducible form when ``exact`` asks for it."""
        return self.exact_from_columns if exact and self.exact_from_columns else self.from_columns


GROUPS: Mapping[str, AttributeGroup] = MappingProxyType({group.name: group for group in (
    AttributeGroup("opacity", "opacity", lambda d: 1, lambda p: p.reshape(p.shape[0], 1),
                   lambda cols, d: cols),
    AttributeGroup("euler", "rotation", lambda d: 3, quat_to_euler,
                   lambda cols, d: euler_to_quat(cols), lambda cols, d: euler_to_quat_exact(cols)),
    AttributeGroup("f_dc", "f_dc", lambda d: 3, lambda p: p.reshape(p.shape[0], 3),
                   lambda cols, d: cols.reshape(cols.shape[0], 1, 3)),
    AttributeGroup("f_rest", "f_rest", rest_columns, lambda p: p.reshape(p.shape[0], -1),
                   lambda cols, d: cols.reshape(cols.shape[0], (d + 1) ** 2 - 1, 3)),
    AttributeGroup("scaling", "scaling", lambda d: 3, lambda p: p, lambda cols, d: cols),
)})


@dataclass(frozen=True)
class Container:
    """How a layout's bitstream is stored.

    Attributes:
        name: the writer/reader the core dispatches on ("bins": a folder of deterministic
            .npz files plus the same files zipped; "compact": one entropy-coded file).
        file_name: the bitstream file in the iteration folder (its size is the reported size).
        folder_name: an unpacked copy beside it, or None.
    """

    name: str
    file_name: str
    folder_name: str | None


BINS = Container("bins", BINS_ZIP, BINS_DIR)
COMPACT = Container("compact", COMPACT_FILE, None)


@dataclass(frozen=True)
class Layout:
    """One codec layout (module docstring).

    Attributes:
        name: the ``--layout`` value, stored in the bitstream's meta.json.
        raht: groups through RAHT + block quantization of the AC coefficients, column order.
        direct: groups block-quantized directly (rows in voxel-key order), column order.
        vq: groups vector-quantized with one codebook over their columns.
        trains: tensors the finetune trains: parameters by name, ``codebook`` for the VQ
            codebook (the parameters of ``vq`` groups are then frozen).
        files: the bins container's array files, in order (meta.json comes first); empty for
            other containers.
        container: how the files are stored.
        quantizer_scheme: the scalar quantizer of the RAHT and direct columns ("block": one
            min–max or LSQ quantizer per (column, block), CODEC.md §6; "level": a fixed uniform
            step per (column, RAHT level), ``step_quantization.py``).
        defaults: the value of every layout-dependent setting when neither its flag nor the
            quality level gives it; None: chosen from the model at prepare (depth, codebook
            size) or, for the settings in ``ignores``, not used.
        ignores: settings this layout does not use (giving one is an error).
        quality_levels: ``--quality`` → the settings it stands for (flags given win); may hold
            ``codebook_reference``, the codebook size of a 32,768-Gaussian model (the size is
            scaled to the model). Empty: the layout has no quality knob.
        quality_without_finetune: the default ``--quality`` when no finetune runs (no scene,
            or ``--finetune_iterations 0``); None: ``defaults["quality"]`` either way. Coarse
            steps rely on the finetune to win back what they lose, so without it the default
            codes finer.
        step_weights: "level" scheme: each RAHT group's step relative to the base step.
        codebook_storage: how the VQ codebook is stored: "float32" values, or "grid": integer
            codes on one uniform step 2^(e/4) chosen per model at prepare
            (``step_quantization.codebook_exponent``); the finetune renders the codebook
            rounded to that grid.
        exact_decode: a decoded model renders exactly what ``pipeline.simulate`` gives in
            evaluation mode, bit for bit (the finetune activates contiguous copies and unit
            quaternions, as the decoded model does), and the decoder is reproducible on every
            machine (reproducible Euler → quaternion, inverse RAHT without fused
            multiply-adds; docs/COMPACT_FORMAT.md §4, §7). The bins layouts keep their historical
            float path (tests/golden pins their bytes).
    """

    name: str
    raht: tuple[str, ...]
    direct: tuple[str, ...]
    vq: tuple[str, ...]
    trains: tuple[str, ...]
    files: tuple[str, ...]
    container: Container
    quantizer_scheme: str
    defaults: Mapping[str, Any] = field(repr=False)
    ignores: tuple[str, ...] = ()
    quality_levels: Mapping[int, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    quality_without_finetune: int | None = None
    step_weights: Mapping[str, float] = field(default_factory=dict, repr=False)
    codebook_storage: str = "float32"
    exact_decode: bool = False

    def __post_init__(self) -> None:
        coded = [GROUPS[name].param for name in self.raht + self.direct + self.vq]
        if sorted(coded) != sorted(CODED_PARAMS):
            raise ValueError(f"layout {self.name!r} must code each of {CODED_PARAMS} once, "
                             f"codes {coded}")
        if self.step_weights and sorted(self.step_weights) != sorted(self.raht):
            raise ValueError(f"layout {self.name!r}: step_weights must name each RAHT group")

    def width(self, groups: tuple[str, ...], sh_degree: int) -> int:
        """Columns of ``groups`` (e.g. ``layout.raht``) at SH degree d."""
        return sum(GROUPS[name].width(sh_degree) for name in groups)

    def columns(self, groups: tuple[str, ...], params: Mapping[str, Tensor]) -> Tensor:
        """Raw parameters → the [N, width] matrix of ``groups`` in column order."""
        return torch.cat([GROUPS[name].to_columns(params[GROUPS[name].param])
                          for name in groups], dim=1)

    def params_from_columns(self, groups: tuple[str, ...], matrix: Tensor,
                            sh_degree: int) -> dict[str, Tensor]:
        """Inverse of :meth:`columns`: [N, width] → raw parameters by name.

        One ``split`` (not one slice per group), so that the backward is one concatenation
        instead of a zero-filled full-width gradient per group.
        """
        widths = [GROUPS[name].width(sh_degree) for name in groups]
        return {GROUPS[name].param: GROUPS[name].inverse(self.exact_decode)(cols, sh_degree)
                for name, cols in zip(groups, torch.split(matrix, widths, dim=1))}


#: today's MesonGS settings, the defaults of the seed and official layouts
_MESONGS_DEFAULTS = MappingProxyType({
    "percent": 0.2, "depth": 20, "n_block": 57, "num_bits": 8, "quantizer": "vanilla",
    "codebook_size": 4096, "vq_steps": 100, "vq_batch": 65536, "oct_merge": "mean",
    "imp_beta": 0.1, "finetune_iterations": 8000, "quality": None, "base_step": None,
    "voxel_ratio": None,
})
#: the compact layout's knob (docs/COMPACT_FORMAT.md; measured in the README): per quality
#: level the pruned fraction, the f_dc step (the others scale by ``step_weights``), the voxel
#: edge over the median Gaussian's largest scale, and the codebook of a 32,768-Gaussian model
_COMPACT_QUALITY_LEVELS = MappingProxyType({
    quality: MappingProxyType({"percent": percent, "base_step": step, "voxel_ratio": ratio,
                               "codebook_reference": codebook})
    for quality, percent, step, ratio, codebook in (
        (1, 0.50, 1.6, 0.4, 16),
        (2, 0.45, 1.1, 0.28, 16),
        (3, 0.40, 0.6, 0.2, 32),
        (4, 0.35, 0.3, 0.14, 64),
        (5, 0.30, 0.15, 0.1, 128),
        (6, 0.20, 0.1, 0.07, 256),
        (7, 0.15, 0.06, 0.05, 512),
        (8, 0.10, 0.03, 0.03, 1024),
        (9, 0.0, 0.006, 0.006, 2048),
    )})
_COMPACT_DEFAULTS = MappingProxyType({
    "percent": None, "depth": None, "n_block": None, "num_bits": None, "quantizer": None,
    "codebook_size": None, "vq_steps": 20, "vq_batch": 32768, "oct_merge": "mean",
    "imp_beta": 0.1, "finetune_iterations": 500, "quality": 5, "base_step": None,
    "voxel_ratio": None,
})

LAYOUTS: Mapping[str, Layout] = MappingProxyType({layout.name: layout for layout in (
    Layout(name="seed", raht=("opacity", "euler", "f_dc", "f_rest", "scaling"), direct=(),
           vq=(), trains=("f_dc", "f_rest", "opacity", "scaling", "rotation"),
           files=("oct.npz", "orgb.npz", "t.npz"), container=BINS, quantizer_scheme="block",
           defaults=_MESONGS_DEFAULTS, ignores=("quality", "base_step", "voxel_ratio")),
    Layout(name="official", raht=("opacity", "euler", "f_dc"), direct=("scaling",),
           vq=("f_rest",), trains=("f_dc", "codebook", "opacity", "scaling", "rotation"),
           files=("oct.npz", "orgb.npz", "t.npz", "ct.npz", "ntk.npz", "um.npz"),
           container=BINS, quantizer_scheme="block", defaults=_MESONGS_DEFAULTS,
           ignores=("quality", "base_step", "voxel_ratio")),
    Layout(name="compact", raht=("opacity", "euler", "f_dc", "scaling"), direct=(),
           vq=("f_rest",), trains=("f_dc", "codebook", "opacity", "scaling", "rotation"),
           files=(), container=COMPACT, quantizer_scheme="level", defaults=_COMPACT_DEFAULTS,
           ignores=("n_block", "num_bits", "quantizer"),
           quality_levels=_COMPACT_QUALITY_LEVELS, quality_without_finetune=8,
           step_weights=MappingProxyType({"opacity": 2.0, "euler": 0.2, "f_dc": 1.0,
                                          "scaling": 0.75}),
           codebook_storage="grid", exact_decode=True),
)})

#: ``--layout`` when not given
DEFAULT_LAYOUT = "seed"
#: the layout of the paper's configurations (``--hyper_config``)
PAPER_LAYOUT = "official"
